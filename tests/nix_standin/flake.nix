{
  # A stand-in for nixpkgs, used only by tests/test_nix.py: `--override-input nixpkgs path:tests/nix_standin`.
  # It offers exactly the attributes flake.nix uses, each a derivation that refuses to build, so the real `nix`
  # can evaluate and check the flake offline in seconds. It proves evaluation and wiring (names, shell hooks,
  # apps), not that nixpkgs builds these shells; an attribute it has and nixpkgs lacks would go unnoticed here.
  # Like nixpkgs (lib/minver.nix: 2.18 since 25.11) it refuses a Nix older than minimumNixVersion as soon as its
  # packages are evaluated, so the tests see what a user of an old Nix (Debian 12's 2.8) would.
  description = "stand-in for nixpkgs in tests/test_nix.py (evaluation only)";

  outputs =
    { self }:
    let
      minimumNixVersion = "2.18";
      checkNixVersion =
        version:
        if builtins.compareVersions version minimumNixVersion < 0 then
          throw "This version of Nixpkgs requires Nix >= ${minimumNixVersion}, please upgrade (this is Nix ${version}; tests/nix_standin)"
        else
          true;
      lib = {
        # nixpkgs takes the "lib" output where a package has one.
        makeLibraryPath = packages: builtins.concatStringsSep ":" (map (p: "${p.lib or p}/lib") packages);
      };
      packagesFor =
        system:
        assert checkNixVersion builtins.nixVersion;
        let
          standIn =
            name: attrs:
            derivation (
              {
                inherit name system;
                builder = "/bin/sh";
                args = [
                  "-c"
                  "echo 'tests/nix_standin: ${name} is a stand-in, not a package' >&2; exit 1"
                ];
              }
              // attrs
            );
          python312 = standIn "python3-3.12.13" { } // {
            sitePackages = "lib/python3.12/site-packages";
            pkgs.tkinter = standIn "python3.12-tkinter-3.12.13" { };
          };
        in
        {
          inherit lib python312;
          ffmpeg-headless = standIn "ffmpeg-headless-8.0" { };
          tk = standIn "tk-8.6.16" { };
          git = standIn "git-2.51.0" { };
          zlib = standIn "zlib-1.3.1" { };
          libGL = standIn "libGL-1.7.0" { };
          glib = standIn "glib-2.86.0" { };
          shellcheck = standIn "shellcheck-0.11.0" { };
          nixfmt-tree = standIn "nixfmt-tree" { };
          # stdenv.cc is the compiler wrapper (cc on PATH), stdenv.cc.cc the compiler with its "lib" output.
          stdenv.cc = standIn "gcc-wrapper-14.3.0" { } // {
            cc = standIn "gcc-14.3.0" { } // {
              lib = standIn "gcc-14.3.0-lib" { };
            };
          };
          # Same attribute layout as nixpkgs: packages end up in nativeBuildInputs, shellHook stays an attribute.
          mkShell =
            {
              name ? "nix-shell",
              packages ? [ ],
              shellHook ? "",
              ...
            }@attrs:
            standIn name (
              builtins.removeAttrs attrs [ "packages" ]
              // {
                nativeBuildInputs = packages;
                inherit shellHook;
              }
            );
          # nixpkgs' writeShellApplication keeps the script body in the derivation's `text` too.
          writeShellApplication =
            {
              name,
              text,
              runtimeInputs ? [ ],
            }:
            standIn name { inherit text runtimeInputs; };
          runCommand = name: env: buildCommand: standIn name (env // { inherit buildCommand; });
        };
    in
    {
      lib = lib // {
        inherit minimumNixVersion checkNixVersion;
      };
      legacyPackages = {
        x86_64-linux = packagesFor "x86_64-linux";
        aarch64-linux = packagesFor "aarch64-linux";
      };
    };
}
