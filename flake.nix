{
  description = "WAN 2.2 trainer: CUDA, ROCm and CPU development shells and apps (docs/nix.md)";

  # A release branch, not unstable: the shells only need Python, ffmpeg, Tk, git and a few libraries, which a
  # stable branch has and its binary cache serves. Move to the next release branch when it is out.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      python = pkgs.python312;

      # Python and its tools come from Nix; torch and every other Python package come from the pinned pip
      # requirements files through scripts/install.sh (docs/nix.md says why, and what a pure-Nix build would be).
      tools = [
        python
        pkgs.ffmpeg
        pkgs.tk
        pkgs.git
      ];
      # Libraries the pip wheels load at run time: libstdc++ (torch, tokenizers), zlib, and libGL/glib for the
      # video readers (decord, av, opencv-style wheels).
      wheelLibraries = [
        pkgs.stdenv.cc.cc.lib
        pkgs.zlib
        pkgs.libGL
        pkgs.glib
      ];
      # Where NixOS puts the GPU driver's user-space libraries (libcuda for the pip CUDA wheels).
      driverLibraries = "/run/opengl-driver/lib";
      # Platform choice, venv reuse and the GPU report: a plain script, tested without Nix (tests/test_nix.py).
      hook = ./scripts/nix/shell_hook.sh;

      # Shared by shells and apps (both put `tools` first on PATH, so install.sh's python3 is this Python). The
      # venv that install.sh creates cannot see Nix's tkinter module (it lives in its own store path), so it goes
      # on PYTHONPATH for the GUI.
      environment = ''
        # mkShell's stdenv sets it to 1980; building a wheel from an sdist with pip then fails (nixpkgs manual).
        unset SOURCE_DATE_EPOCH
        export LD_LIBRARY_PATH=${pkgs.lib.makeLibraryPath wheelLibraries}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        export PYTHONPATH=${python.pkgs.tkinter}/${python.sitePackages}''${PYTHONPATH:+:$PYTHONPATH}
      '';

      # A shell fixes its platform (WAN_TRAINER_PLATFORM) for install.sh; platformSetup runs before the hook.
      mkTrainerShell =
        platform: platformSetup:
        pkgs.mkShell {
          name = "wan-trainer-${platform}";
          packages = tools;
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
          name = "wan-trainer-${name}";
          runtimeInputs = tools;
          text = ''
            ${environment}
            # Only the CUDA wheels need it; where the folder does not exist it changes nothing.
            export LD_LIBRARY_PATH=${driverLibraries}:$LD_LIBRARY_PATH
            # shellcheck source=/dev/null
            source ${hook}
            wan_trainer_enter
            ${command}
          '';
        };
      python-script = script: ''exec "$WAN_TRAINER_ROOT/.venv/bin/python" "$WAN_TRAINER_ROOT/scripts/${script}" "$@"'';
      bash-script = script: ''exec bash "$WAN_TRAINER_ROOT/scripts/${script}" "$@"'';
      appScripts = {
        train = mkAppScript "train" (python-script "train.py");
        ui = mkAppScript "ui" (python-script "train_ui.py");
        demo = mkAppScript "demo" (bash-script "run_demo.sh");
        tests = mkAppScript "tests" (bash-script "run_tests.sh");
      };
      appDescriptions = {
        train = "Train from a config: nix run .#train -- --config-path FILE";
        ui = "The training GUI (scripts/train_ui.py)";
        demo = "Train the tiny demo end to end (scripts/run_demo.sh)";
        tests = "Run the test suite (scripts/run_tests.sh)";
      };
    in
    {
      devShells.${system} = {
        default = mkTrainerShell "default" "";
        cuda = mkTrainerShell "cuda" ''
          export LD_LIBRARY_PATH=${driverLibraries}''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        '';
        # HSA_OVERRIDE_GFX_VERSION is deliberately not set here: the shell keeps the value from your environment
        # (`HSA_OVERRIDE_GFX_VERSION=10.3.0 nix develop .#rocm`), so consumer cards need no edit of this file.
        rocm = mkTrainerShell "rocm" ''
          if [ -n "''${HSA_OVERRIDE_GFX_VERSION:-}" ]; then export HSA_OVERRIDE_GFX_VERSION; fi
        '';
      };

      packages.${system} = appScripts;

      apps.${system} = builtins.mapAttrs (name: script: {
        type = "app";
        program = "${script}/bin/wan-trainer-${name}";
        meta.description = appDescriptions.${name};
      }) appScripts;

      formatter.${system} = pkgs.nixfmt-tree;

      checks.${system} = {
        # The hook and the installer every shell and app runs, as shellcheck sees them.
        shell-scripts = pkgs.runCommand "wan-trainer-shellcheck" { nativeBuildInputs = [ pkgs.shellcheck ]; } ''
          shellcheck ${hook} ${./scripts/install.sh}
          touch $out
        '';
        inherit (self.devShells.${system}) default cuda rocm;
      };
    };
}
