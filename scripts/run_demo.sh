#!/usr/bin/env bash
# Quick start, step 1: set up, then train the demo (tiny TI2V-5B LoRA on synthetic clips) end to end.
# Everything is written under $WAN_DEMO_ROOT (default: workspace/demo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install.sh
demo="${WAN_DEMO_ROOT:-workspace/demo}"
py=.venv/bin/python
[ -f "$demo/models/TI2V-5B/model_index.json" ] || $py scripts/make_tiny_models.py --out "$demo/models" --variant TI2V-5B
[ -d "$demo/data" ] || $py scripts/make_demo_data.py --out "$demo/data"
exec $py scripts/train.py --config-path training_presets/demo_ti2v_5b_lora.json \
  --config-value "model.base_path=$demo/models/TI2V-5B" \
  --config-value "data.concepts.0.path=$demo/data" \
  --config-value "output.workspace_dir=$demo/run" "$@"
