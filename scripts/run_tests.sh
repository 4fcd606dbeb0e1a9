#!/usr/bin/env bash
# Quick start, step 2: set up, then run the whole test suite (CPU is enough).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install.sh
bash scripts/install_display.sh  # Xvfb for the GUI tests (they start it themselves)
exec .venv/bin/python -m pytest -q tests "$@"
