#!/usr/bin/env bash
# Quick start, step 2: set up, then run the whole test suite (CPU is enough).
#   bash scripts/run_tests.sh          # everything (about 13 minutes on an idle 2-core machine)
#   bash scripts/run_tests.sh --fast   # the fast loop: no Nix/Xvfb installs, tests marked `slow` left out
# Other arguments go to pytest (e.g. -k name, -x). The 25 slowest tests are printed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
fast=0
args=()
for argument in "$@"; do
    if [ "$argument" = "--fast" ]; then fast=1; else args+=("$argument"); fi
done
if [ "$fast" = 0 ]; then
    bash scripts/ci_install_nix.sh  # Nix >= 2.18 for tests/test_nix.py (Debian 13's nix-bin, in ~/.cache/wan-trainer/nix)
fi
bash scripts/install.sh
# Lint first, so CI fails on style and import-order errors too (config: pyproject.toml).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ "$fast" = 1 ]; then
    # Slow tests (over ~10 s each on an idle 2-core machine; tests/conftest.py) are left out; so are the GUI
    # tests among them, so no display is needed.
    exec .venv/bin/python -m pytest -q tests --durations=25 -m "not slow" ${args[@]+"${args[@]}"}
fi
bash scripts/install_display.sh  # Xvfb for the GUI tests (they start it themselves)
exec .venv/bin/python -m pytest -q tests --durations=25 ${args[@]+"${args[@]}"}
