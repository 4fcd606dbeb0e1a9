{
  description = "WAN 2.2 trainer: CUDA, ROCm and CPU development shells and apps (docs/nix.md)";

  # A release branch, not unstable: the shells only need Python, ffmpeg, Tk, git and a few libraries, which a
  # stable branch has and its binary cache serves. Move to the next release branch when it is out.
  # flake.lock pins the commit; an unlocked flake (no flake.lock) is unsupported: every evaluation would take the
  # branch as it is that day. Create the lock once with `nix flake lock` and commit it (docs/nix.md). Needs
  # Nix >= 2.18 (nixpkgs refuses older).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      # CUDA and ROCm wheels exist for x86_64 only; the CPU shell and the apps work on aarch64 too.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      gpuSystem = "x86_64-linux";
      forSystems = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      # Where NixOS puts the GPU driver's user-space libraries (libcuda for the pip CUDA wheels).
      driverLibraries = "/run/opengl-driver/lib";
      # Platform choice, venv reuse, the python wrapper and the GPU report: a plain script, tested without Nix.
      hook = ./scripts/nix/shell_hook.sh;
      # The hook warns when this is 0 (docs/nix.md, "flake.lock").
      locked = if builtins.pathExists ./flake.lock then "1" else "0";

      perSystem =
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          python = pkgs.python312;
          # Triton (torch.compile on CUDA) compiles small C helpers at run time: a C compiler must be on PATH.
          compiler = pkgs.stdenv.cc;

          # Python and its tools come from Nix; torch and every other Python package come from the pinned pip
          # requirements files through scripts/install.sh (docs/nix.md says why, and what a pure-Nix build would
          # be). ffmpeg-headless: the trainer only decodes and encodes files.
          tools = [
            python
            pkgs.ffmpeg-headless
            pkgs.tk
            pkgs.git
          ];
          # Libraries the pip wheels load at run time: libstdc++ (torch, tokenizers), zlib, and libGL/glib for
          # the video readers (decord, av, opencv-style wheels).
          wheelLibraries = [
            pkgs.stdenv.cc.cc.lib
            pkgs.zlib
            pkgs.libGL
            pkgs.glib
          ];

          # Shared by shells and apps (both put `tools` first on PATH, so install.sh's python3 is this Python).
          # The libraries and Nix's tkinter (the venv cannot see its store path) are for the trainer's Python only:
          # the hook makes .venv/bin/python a wrapper that sets them, so no other program of the shell loads Nix's
          # newer libstdc++/glib (on an older-glibc host that fails with `GLIBC_2.38 not found`).
          environment = ''
            # mkShell's stdenv sets it to 1980; building a wheel from an sdist with pip then fails (nixpkgs manual).
            unset SOURCE_DATE_EPOCH
            export WAN_TRAINER_LIBRARY_PATH=${pkgs.lib.makeLibraryPath wheelLibraries}
            export WAN_TRAINER_PYTHONPATH=${python.pkgs.tkinter}/${python.sitePackages}
            export WAN_TRAINER_FLAKE_LOCKED=${locked}
          '';
          # The NixOS driver folder first on the trainer's library path (where it does not exist it changes
          # nothing), and Triton told where libcuda is (it asks `ldconfig -p`, which NixOS lacks); the hook
          # points TRITON_LIBCUDA_PATH elsewhere where it finds libcuda elsewhere (WSL2, other distributions).
          cudaSetup = ''
            export WAN_TRAINER_LIBRARY_PATH=${driverLibraries}:$WAN_TRAINER_LIBRARY_PATH
            export TRITON_LIBCUDA_PATH=${driverLibraries}
          '';

          # A shell fixes its platform (WAN_TRAINER_PLATFORM) for install.sh; platformSetup runs before the hook.
          mkTrainerShell =
            platform: platformSetup: extraPackages:
            pkgs.mkShell {
              name = "wan-trainer-${platform}";
              packages = tools ++ extraPackages;
              shellHook = ''
                ${environment}
                ${platformSetup}
                export WAN_TRAINER_PLATFORM=${platform}
                source ${hook}
                wan_trainer_enter
              '';
            };

          # Apps run in the environment of the platform that scripts/install.sh picks (an NVIDIA GPU: cuda, an AMD
          # one: rocm, else default), or the one in WAN_TRAINER_PLATFORM; the checkout is the one around $PWD or
          # WAN_TRAINER_ROOT, so relative paths in arguments keep meaning what they meant where you typed them.
          mkAppScript =
            name: command:
            pkgs.writeShellApplication {
              inherit name;
              runtimeInputs = tools ++ [ compiler ];
              text = ''
                ${environment}
                ${cudaSetup}
                # shellcheck source=/dev/null
                source ${hook}
                wan_trainer_enter
                ${command}
              '';
            };
          python-script = script: ''exec "$WAN_TRAINER_ROOT/.venv/bin/python" "$WAN_TRAINER_ROOT/scripts/${script}" "$@"'';
          bash-script = script: ''exec bash "$WAN_TRAINER_ROOT/scripts/${script}" "$@"'';
          appScripts = builtins.mapAttrs (name: command: mkAppScript "wan-trainer-${name}" command) {
            train = python-script "train.py";
            ui = python-script "train_ui.py";
            demo = bash-script "run_demo.sh";
            tests = bash-script "run_tests.sh";
          };
          appDescriptions = {
            train = "Train from a config: nix run .#train -- --config-path FILE";
            ui = "The training GUI (scripts/train_ui.py)";
            demo = "Train the tiny demo end to end (scripts/run_demo.sh)";
            tests = "Run the test suite (scripts/run_tests.sh)";
          };
          shells = {
            default = mkTrainerShell "default" "" [ ];
          }
          // (
            if system == gpuSystem then
              {
                cuda = mkTrainerShell "cuda" cudaSetup [ compiler ];
                # HSA_OVERRIDE_GFX_VERSION is deliberately not set here: the shell keeps the value from your
                # environment (`HSA_OVERRIDE_GFX_VERSION=10.3.0 nix develop .#rocm`), so consumer cards need no
                # edit of this file.
                rocm = mkTrainerShell "rocm" ''
                  if [ -n "''${HSA_OVERRIDE_GFX_VERSION:-}" ]; then export HSA_OVERRIDE_GFX_VERSION; fi
                '' [ ];
              }
            else
              { }
          );
        in
        {
          inherit shells;
          packages = appScripts;
          apps = builtins.mapAttrs (name: script: {
            type = "app";
            program = "${script}/bin/wan-trainer-${name}";
            meta.description = appDescriptions.${name};
          }) appScripts;
          formatter = pkgs.nixfmt-tree;
          checks = {
            # The hook and the installer every shell and app runs, as shellcheck sees them.
            shell-scripts = pkgs.runCommand "wan-trainer-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
              shellcheck ${hook} ${./scripts/install.sh}
              touch $out
            '';
          }
          // shells;
        };
      outputsOf = forSystems perSystem;
      collect = attribute: builtins.mapAttrs (_: outputs: outputs.${attribute}) outputsOf;
    in
    {
      devShells = collect "shells";
      packages = collect "packages";
      apps = collect "apps";
      formatter = collect "formatter";
      checks = collect "checks";
    };
}
