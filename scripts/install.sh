#!/usr/bin/env bash
# Creates .venv (once) and installs the requirements file for this machine's accelerator.
# Override the choice with WAN_TRAINER_PLATFORM=cuda|rocm|default.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python_bin="${PYTHON:-python3}"
"$python_bin" - <<'PY' || { echo "install.sh: Python 3.10-3.12 is required (found $("$python_bin" --version 2>&1)); set PYTHON=/path/to/python3.x" >&2; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)
PY

platform="${WAN_TRAINER_PLATFORM:-}"
if [ -z "$platform" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then platform=cuda
  elif command -v rocminfo >/dev/null 2>&1 || [ -e /dev/kfd ]; then platform=rocm
  else platform=default
  fi
fi
case "$platform" in cuda|rocm|default) ;; *)
  echo "install.sh: WAN_TRAINER_PLATFORM must be cuda, rocm or default (got '$platform')" >&2; exit 1;;
esac
requirements="requirements-$platform.txt"

[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
# Reinstall only when the requirements changed: a stamp holds the hash of what was installed.
stamp=.venv/.installed-requirements
want="$platform $(cat requirements-global.txt "$requirements" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install.sh: installing $requirements into .venv (platform: $platform)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$requirements"
  echo "$want" > "$stamp"
fi
