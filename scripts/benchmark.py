"""Training speed and memory of a real-shape WAN 2.2 model: s/step, tokens/s, TFLOP/s, MFU, peak memory.

The model has the real shape and random weights (no download); the data is random latents of the clip size;
the steps are GenericTrainer's own. One expert of an A14B model is trained (each step trains one anyway).

  # TI2V-5B LoRA r32 at 1280x704x121, eager and with the blocks compiled:
  python scripts/benchmark.py --variant TI2V-5B --width 1280 --height 704 --frames 121 --rank 32 \\
      --compile none,blocks --json docs/benchmarks/ti2v_5b_lora.json
  # a preset's settings under 16/24/32/48/80 GB caps (which fit?):
  python scripts/benchmark.py --preset training_presets/wan22_t2v_a14b_lora_24gb.json --sweep tiers
  # regression check against an earlier result with the same full settings (exit code 3 when slower or bigger,
  # 4 when no row of the baseline has the settings of a row here):
  python scripts/benchmark.py ... --compare baseline.json
  # CPU, tiny model (what CI runs):
  python scripts/benchmark.py --tiny --steps 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.benchmark import results
from modules.benchmark.runner import Measure, run_configuration
from modules.config.loading import apply_override, config_from_dict
from modules.util.errors import run_script
from modules.wan.variants import VARIANTS

TIERS_GB = (16, 24, 32, 48, 80)
TINY = {"num_layers": 2, "heads": 2, "head_dim": 32}
REGRESSION_EXIT_CODE = 3
NO_MATCH_EXIT_CODE = 4  # --compare found no row of the baseline with the same full settings
LANDSCAPE = (832, 480)  # the aspect ratio of the default benchmark clip (WAN's 480p landscape)


def base_settings(args) -> dict:
    if args.preset:
        data = json.loads(Path(args.preset).read_text(encoding="utf-8"))
    else:
        data = {"model": {"variant": args.variant, "transformer_dtype": "bfloat16"}, "training_method": "lora"}
    data.setdefault("model", {})
    data["model"]["base_path"] = "<random weights>"  # never loaded: the benchmark builds the model
    data.setdefault("data", {})["concepts"] = [{"path": "<synthetic latents>"}]
    # Only what is timed: no samples, backups or periodic saves.
    data["sampling"] = {"samples": [], "sample_at_end": False}
    data["backup"] = {"every_steps": 0}
    data.setdefault("output", {})["save_every_steps"] = 0
    data.setdefault("output", {})["tensorboard"] = False
    # The random model has no folder to copy the untrained parts from: a full fine-tune saves its single files only.
    data.setdefault("finetune", {})["save_diffusers"] = False
    variant = VARIANTS[data["model"].get("variant", args.variant)]
    if variant.has_transformer_2:
        data.setdefault("experts", {})["train"] = "high_noise"
    flags = {
        "variant": ("model", "variant"),
        "rank": ("lora", "rank"),
        "frames": ("data", "frames"),
        "batch_size": ("training", "batch_size"),
        "dtype": ("training", "train_dtype"),
        "optimizer": ("training", "optimizer"),
        "device": ("training", "device"),
    }
    for flag, (section, key) in flags.items():
        value = getattr(args, flag)
        if value is not None and not (flag == "variant" and args.preset):
            data.setdefault(section, {})[key] = value
    if args.dtype:
        data["model"]["transformer_dtype"] = args.dtype
    if args.fp8:
        data["model"]["transformer_dtype"] = "float8_e4m3fn"
    if args.checkpointing is not None:
        data.setdefault("training", {})["gradient_checkpointing"] = args.checkpointing
    if args.tiny:
        data["model"]["transformer_dtype"] = data.setdefault("training", {})["train_dtype"] = "float32"
    for override in args.set:
        apply_override(data, override)
    return data


def clip_size(data: dict, tiny: bool) -> tuple[int, int]:
    """The default clip: 64x64 tiny; else the bucket training would use for a landscape 832x480 clip at the
    preset's data.resolution (its area), e.g. 832x480 for the A14B presets' 632, never a size the model refuses."""
    if tiny:
        return 64, 64
    from modules.data.clips.buckets import resolution_bucket

    variant = VARIANTS[data["model"]["variant"]]
    side = data["data"].get("resolution", 640)
    return resolution_bucket(LANDSCAPE[0], LANDSCAPE[1], side * side, variant.pixel_multiple)


def configurations(args) -> list[tuple[str, dict, Measure]]:
    data = base_settings(args)
    variant = data["model"]["variant"]
    default_width, default_height = clip_size(data, args.tiny)
    width = args.width or default_width
    height = args.height or default_height
    frames = data["data"].setdefault("frames", 9 if args.tiny else 81)
    label = f"{variant} {data.get('training_method', 'lora')} {width}x{height}x{frames}"
    rows = []
    for compile_mode in args.compile.split(","):
        settings = json.loads(json.dumps(data))
        settings.setdefault("training", {})["compile"] = compile_mode
        caps = TIERS_GB if args.sweep == "tiers" else (args.memory_cap,)
        for cap in caps:
            name = f"{label} compile={compile_mode}" + (f" cap={cap}GB" if cap else "")
            measure = Measure(
                steps=args.steps,
                warmup=args.warmup,
                tiny=TINY if args.tiny else None,
                memory_cap_gib=cap,
                fail_at=args.force_oom_at,
                peak_tflops=args.peak_tflops,
                width=width,
                height=height,
            )
            rows.append((name, settings, measure))
    return rows


def print_row(row: dict) -> None:
    if row["status"] != "ok":
        print(f"{row['name']}: {row['status'].upper()} {row.get('error', '')}")
        return
    mfu = f"{row['mfu'] * 100:.1f}%" if row["mfu"] is not None else "n/a (no peak known: --peak-tflops)"
    memory = (
        f"peak {row['peak_allocated_gib']:.2f} GiB allocated / {row['peak_reserved_gib']:.2f} reserved"
        if row["peak_allocated_gib"] is not None
        else "device memory n/a on CPU"
    )
    warmup = ", ".join(f"{t:.2f}" for t in row["warmup_s"])
    print(
        f"{row['name']}: {row['steady_s_median']:.3f} s/step (min {row['steady_s_min']:.3f}, max "
        f"{row['steady_s_max']:.3f}, {row['steady_steps']} steps), warm-up {warmup} s, "
        f"{row['tokens_per_s']:.0f} tokens/s, {row['achieved_tflops']:.2f} TFLOP/s, MFU {mfu}, {memory}, "
        f"host peak {row['host_peak_rss_gib']:.2f} GiB"
    )


def run_all(args) -> dict:
    """Every configuration, each an ok/oom/skipped/error row; the JSON (--json) is rewritten after every row, so a
    run that dies later still leaves the rows before."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    document = {
        "machine": results.machine_info(torch.device(device)),
        "versions": results.versions(),
        "git_commit": results.git_commit(),
        "attention": results.attention_backends(torch.device(device)),
        "results": [],
    }
    for name, settings, measure in configurations(args):
        try:
            row = run_configuration(name, config_from_dict(settings), measure)
        except Exception as error:  # noqa: BLE001 - a bad configuration (e.g. ConfigError) is a row too
            row = {"name": name, "status": "error", "error": f"{type(error).__name__}: {error}"[:500]}
        row.update(settings=settings, width=measure.width, height=measure.height)
        print_row(row)
        document["results"].append(row)
        if args.json:
            results.write_results(args.json, document)
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help="take the method, dtype, memory and optimizer settings of this preset")
    parser.add_argument("--variant", default="TI2V-5B", choices=sorted(VARIANTS))
    parser.add_argument("--width", type=int, help="clip width in pixels (default: data.resolution)")
    parser.add_argument("--height", type=int, help="clip height in pixels (default: data.resolution)")
    parser.add_argument("--frames", type=int, help="clip frames (4n+1)")
    parser.add_argument("--rank", type=int, help="LoRA rank")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="weights and compute dtype")
    parser.add_argument("--fp8", action="store_true", help="fp8 storage of the frozen block linears")
    parser.add_argument("--optimizer")
    parser.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", default="none", help="comma list of none, blocks, full (one row each)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config setting")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: the GPU if there is one)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the steady figures")
    parser.add_argument("--sweep", choices=("tiers",), help="repeat under 16/24/32/48/80 GB memory caps")
    parser.add_argument("--memory-cap", type=float, help="cap device memory at this many GB")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, when it is not in the table")
    parser.add_argument("--tiny", action="store_true", help="tiny model at float32 (for CPUs and tests)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--results", type=Path, help="compare (or re-check) this results file instead of running")
    parser.add_argument("--compare", type=Path, help="a baseline results file: exit 3 on a regression")
    parser.add_argument("--threshold", type=float, default=0.05, help="slower than baseline by more (fraction)")
    parser.add_argument("--memory-threshold", type=float, default=0.02, help="more memory than baseline (fraction)")
    parser.add_argument("--force-oom-at", help="test only: raise an out-of-memory error at e.g. backward:1")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must be larger than --warmup")

    if args.results:
        document = json.loads(args.results.read_text(encoding="utf-8"))
    else:
        document = run_all(args)
    results.validate(document)
    if args.json:
        results.write_results(args.json, document)
        print(f"results: {args.json}")
    if args.compare:
        baseline = json.loads(args.compare.read_text(encoding="utf-8"))
        if not results.matching_rows(document, baseline):
            print(f"NO MATCH: no row of {args.compare} has the full settings of a row here (name, settings, size, cap)")
            return NO_MATCH_EXIT_CODE
        regressions = results.compare(document, baseline, args.threshold, args.memory_threshold)
        for line in regressions:
            print(f"REGRESSION {line}")
        if regressions:
            return REGRESSION_EXIT_CODE
        print(f"no regression against {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
