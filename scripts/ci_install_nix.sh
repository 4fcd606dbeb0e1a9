#!/usr/bin/env bash
# Installs Nix from the distribution's packages (Debian/Ubuntu: nix-bin) so that tests/test_nix.py runs instead of
# skipping; under CI=true that test fails when nix is missing. Does nothing where nix is already installed, or
# where it cannot install (not root, no apt-get): the test then says why. Never stops the test run.
set -uo pipefail
command -v nix >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ci_install_nix.sh: nix is not installed (Debian/Ubuntu: apt-get install nix-bin); tests/test_nix.py will skip" >&2
  exit 0
fi
echo "ci_install_nix.sh: installing nix-bin for tests/test_nix.py" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq nix-bin; } >/dev/null 2>&1 ||
  echo "ci_install_nix.sh: apt-get could not install nix-bin; tests/test_nix.py will skip (or fail under CI=true)" >&2
exit 0
