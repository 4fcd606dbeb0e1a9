"""The first run on a GPU: everything only a GPU exercises, in order of value, within a time budget.

  python scripts/gpu_acceptance.py                      # on one CUDA/ROCm GPU, 540 s, results in docs/benchmarks/
  python scripts/gpu_acceptance.py --budget-s 300 --out /tmp/acceptance
  python scripts/gpu_acceptance.py --device cpu --tiny --out /tmp/acceptance   # the plumbing (CI, < 2 minutes)

Stages (modules/benchmark/acceptance.py STAGES): environment; one tiny training step on the CPU and on the GPU
(loss and every LoRA gradient compared); every real preset's settings at tiny size; fp8/int8/nf4 layers and block
swapping (bit-equal, placement trace, copy overlap); real shapes (TI2V-5B r32 and one A14B expert r64 at
832x480x81, eager and compile=blocks); the A14B 24 GB preset under a 24 GiB cap. Before each stage its time
estimate is printed; a stage the budget left cannot hold is skipped with the reason. gpu_acceptance.json and
gpu_acceptance.md are rewritten after every stage, so a run cut short still leaves its results; each benchmark's
own JSON and log go beside them. Exit code: 0 when no stage failed, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.benchmark import acceptance_checks as checks
from modules.benchmark.acceptance import DEFAULT_BUDGET_S, STAGES, AcceptanceReport, estimate_s, run_stages
from modules.util.errors import run_script

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (the GPU), cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes only (the CPU plumbing run)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="seconds for all stages together")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="folder for the results")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA/ROCm GPU; use --device cpu --tiny", file=sys.stderr)
        return 2
    on_gpu, tiny, out = device.type == "cuda", args.tiny or device.type != "cuda", args.out
    if not on_gpu:  # tiny models on a CPU are dominated by thread overhead
        torch.set_num_threads(1)
    deadline = time.monotonic() + args.budget_s

    estimates = {stage.key: estimate_s(stage, on_gpu, tiny) for stage in STAGES}

    def left(key: str) -> float:
        """A child process's time limit: what the budget has left, and never 3x its estimate (a hung stage must
        not eat the stages after it)."""
        return min(deadline - time.monotonic(), 3 * estimates[key] + 30)

    report = AcceptanceReport(out_dir=out, device=str(device), tiny=tiny, budget_s=args.budget_s)

    def environment() -> dict:
        result = checks.environment(device)
        report.environment = {k: v for k, v in result.items() if k != "summary"}
        return result

    runners = {
        "environment": environment,
        "cpu_vs_device": lambda: checks.cpu_vs_device(device),
        "presets": lambda: checks.presets(device, tiny, out, left("presets")),
        "layers_and_swap": lambda: checks.layers_and_swap(device, tiny),
        "real_5b": lambda: checks.real_shapes("TI2V-5B", 32, tiny, device, out, left("real_5b")),
        "real_a14b": lambda: checks.real_shapes("T2V-A14B", 64, tiny, device, out, left("real_a14b")),
        "a14b_24gb_cap": lambda: checks.capped_a14b(device, out, left("a14b_24gb_cap")),
    }
    print(f"GPU acceptance on {device}{' (tiny)' if tiny else ''}, budget {args.budget_s:.0f} s, results in {out}")
    run_stages(report, runners, on_gpu, deadline)
    failed = [s["key"] for s in report.stages if s["status"] in ("failed", "error")]
    print(
        f"results: {report.json_path} and {report.markdown_path}" + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
