#!/usr/bin/env bash
# Quick start, step 2: set up, then run the whole test suite (CPU is enough).
#   bash scripts/run_tests.sh          # everything (about 11 minutes on an idle 2-core machine, 2 workers)
#   bash scripts/run_tests.sh --fast   # the fast loop: no Nix/Xvfb installs, tests marked `slow` left out
# Other arguments go to pytest (e.g. -k name, -x). The 25 slowest tests are printed at the end. Tests run in
# WAN_TEST_WORKERS processes (default 2; each holds torch and a tiny model, ~1.5 GB), a test file per worker at a
# time (--dist loadfile) so module fixtures are built once; WAN_TEST_WORKERS=0 runs them in this process.
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
workers=(-n "${WAN_TEST_WORKERS:-2}" --dist loadfile)
if [ "${WAN_TEST_WORKERS:-2}" = 0 ]; then workers=(-p no:xdist); fi
if [ "$fast" = 1 ]; then
    # Slow tests (over ~10 s each on an idle 2-core machine; tests/conftest.py) are left out; so are the GUI
    # tests among them, so no display is needed.
    exec .venv/bin/python -m pytest -q tests --durations=25 "${workers[@]}" -m "not slow" ${args[@]+"${args[@]}"}
fi
bash scripts/install_display.sh  # Xvfb for the GUI tests (they start it themselves)
exec .venv/bin/python -m pytest -q tests --durations=25 "${workers[@]}" ${args[@]+"${args[@]}"}
