"""Smoke run of every real preset: its settings on the tiny model of its variant, 2 steps and one sample.

Every setting of the preset is kept (dtypes, fp8 storage, optimizer, offloading, checkpointing, experts,
samples scaled down) except the model, the clip size and the step count; a setting that cannot run on this
device is replaced and named with its reason. Exit code 1 if any preset fails.

  python scripts/smoke_presets.py [--preset training_presets/wan22_t2v_a14b_lora_24gb.json ...] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.benchmark.preset_smoke import adapt_to_device, ensure_one_sample, run_smoke, shrink_preset
from modules.data.sources.demo_data import make_demo_data
from modules.util.errors import run_script
from modules.wan.tiny_models import write_tiny_model
from modules.wan.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent


def real_presets() -> list[Path]:
    return sorted((REPO / "training_presets").glob("wan22_*.json"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, action="append", help="default: every training_presets/wan22_*.json")
    parser.add_argument("--device", default="auto", help="auto (the GPU if there is one), cpu or cuda")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    if device.type == "auto":
        device = torch.device("cpu")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        demo = root / "data"
        make_demo_data(demo)
        start_image = next(demo.glob("*.png"))
        models: dict[str, Path] = {}
        for path in args.preset or real_presets():
            data = json.loads(path.read_text(encoding="utf-8"))
            variant = VARIANTS[data["model"]["variant"]]
            if variant.name not in models:
                models[variant.name] = write_tiny_model(variant.name, root / "models" / variant.name)
            smoke = shrink_preset(data, models[variant.name], demo, start_image, root / "runs" / path.stem)
            smoke.setdefault("training", {})["device"] = str(device)
            replaced = adapt_to_device(smoke, device) + ensure_one_sample(
                smoke, variant.image_conditioning, start_image
            )
            result = run_smoke(path, smoke, replaced)
            results.append(result)
            print(f"{result.preset}: {result.status.upper()} in {result.seconds:.1f} s on {device}", flush=True)
            for line in result.replaced:
                print(f"    replaced: {line}")
            if result.error:
                print(f"    error: {result.error}")
    failed = [r for r in results if r.status != "ok"]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
