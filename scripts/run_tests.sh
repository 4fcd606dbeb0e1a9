#!/usr/bin/env bash
# Quick start, step 2: set up, then run the whole test suite (CPU is enough).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/ci_install_nix.sh  # Nix >= 2.18 for tests/test_nix.py (Debian 13's nix-bin unpacked into ~/.cache/wan-trainer/nix)
bash scripts/install.sh
# Lint first, so CI fails on style and import-order errors too (config: pyproject.toml).
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/install_display.sh  # Xvfb for the GUI tests (they start it themselves)
exec .venv/bin/python -m pytest -q tests "$@"
