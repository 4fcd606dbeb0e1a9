"""Print what this machine and a training config look like to the trainer: attach the output to bug reports.

python scripts/diagnose.py
python scripts/diagnose.py --config-path training_presets/wan22_t2v_a14b_lora_24gb.json --json

OS, Python, torch with its CUDA or ROCm (HIP) version, each GPU (memory, compute capability or gfx target),
bitsandbytes' backend, ffmpeg and the video readers; with a config, each model part as detected and the memory
planner's verdict for the GPU found. Every training run writes the same report to <workspace>/diagnostics.json.
"""

import argparse
import json
import sys

import _repo_path  # noqa: F401

from modules.trainer.reporting.diagnostics import collect_report, format_report
from modules.util.errors import run_script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-path", help="a training config whose model parts and memory plan to report")
    parser.add_argument(
        "--config-value", action="append", default=[], metavar="KEY=VALUE", help="override one setting (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()
    config, config_error = None, None
    if args.config_path:
        from modules.config.loading import load_config

        try:
            config = load_config(args.config_path, args.config_value)
        except Exception as error:  # noqa: BLE001 - a broken config is reported, the rest still printed
            config_error = f"{args.config_path}: {error}"
    report = collect_report(config, config_error)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
