"""Soak test: a tiny demo run of thousands of steps with backups, samples and validation every few steps.

Checks what only a long run shows: resident memory stays flat (no leak per step, per backup, per sample),
the backup folder keeps only backup.rolling_count backups, and no temp folder is left behind. Not part of
the default test run (minutes); the result is recorded in docs/reliability.md and docs/benchmarks.md.

    python scripts/soak.py [--steps 2000] [--backup-every 10] [--sample-every 100] [--validation-every 50]

Resident memory is read after every step; the first 10% of steps are warm-up (allocator pools, caches
filling). Exit code 1 when the growth from the end of warm-up to the end exceeds --max-growth-mib, when the
backup folder holds another count than rolling_count, or when a temp folder is left.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import psutil
import torch

from modules.config.loading import load_config
from modules.data.sources.demo_data import make_demo_data
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.backups import backup_folders
from modules.util.errors import run_script
from modules.wan.tiny_models import write_tiny_model

PRESET = Path(__file__).resolve().parent.parent / "training_presets" / "demo_ti2v_5b_lora.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--backup-every", type=int, default=10)
    parser.add_argument("--rolling-count", type=int, default=3)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--validation-every", type=int, default=50)
    parser.add_argument("--max-growth-mib", type=float, default=64.0)
    parser.add_argument("--root", default="", help="work folder (default: a temp folder, removed at the end)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: threads only add noise on a shared machine

    with tempfile.TemporaryDirectory() as temp:
        root = Path(args.root or temp)
        model = root / "model"
        if not (model / "model_index.json").is_file():
            write_tiny_model("TI2V-5B", model)
        if not (root / "data").is_dir():
            make_demo_data(root / "data")
        config = load_config(
            PRESET,
            [
                f"model.base_path={model}",
                f"data.concepts.0.path={root / 'data'}",
                f"output.workspace_dir={root / 'run'}",
                f"training.max_steps={args.steps}",
                "output.save_every_steps=0",
                "output.tensorboard=true",
                f"backup.every_steps={args.backup_every}",
                f"backup.rolling_count={args.rolling_count}",
                f"sampling.every_steps={args.sample_every}",
                "sampling.sample_at_end=false",
                "sampling.format=png",
                "sampling.tensorboard=false",
                'sampling.samples=[{"prompt": "a red circle", "width": 32, "height": 32, "frames": 5, "steps": 2}]',
                f"sampling.validation_concept={root / 'data'}",
                f"sampling.validation_every_steps={args.validation_every}",
                "sampling.validation_quantiles=[0.5]",
            ],
        )
        process = psutil.Process(os.getpid())
        rss: list[float] = []
        backup_counts: list[int] = []
        backups_root = root / "run" / "backups"

        def measure(progress, loss) -> None:
            rss.append(process.memory_info().rss / 2**20)
            if progress.global_step % args.backup_every == 1:  # after the previous step's backup and pruning
                backup_counts.append(len(backup_folders(backups_root)))

        trainer = GenericTrainer(config)
        trainer.step_callbacks.append(measure)
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started

        warm = max(1, len(rss) // 10)
        head = statistics.median(rss[warm : warm + max(1, len(rss) // 20)])
        tail = statistics.median(rss[-max(1, len(rss) // 20) :])
        growth = tail - head
        final_backups = len(backup_folders(backups_root))
        temp_left = sorted(p.name for p in backups_root.glob(".tmp-*"))
        samples = len(list((root / "run" / "samples").rglob("*.json"))) if (root / "run" / "samples").is_dir() else 0
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
        )
        print(f"steps: {result.steps} in {seconds:.0f} s ({seconds / max(1, result.steps) * 1000:.0f} ms/step)")
        print(
            f"backups every {args.backup_every} steps: at most {max(backup_counts or [0])} kept during the run, "
            f"{final_backups} at the end (rolling_count {args.rolling_count}); temp folders left: {temp_left}"
        )
        print(f"samples written: {samples} sidecars; validation every {args.validation_every} steps")
        print(
            f"resident memory: {rss[0]:.0f} MiB after step 1, {head:.0f} MiB after warm-up (step {warm}), "
            f"{tail:.0f} MiB at the end, max {max(rss):.0f} MiB; growth after warm-up {growth:+.1f} MiB"
        )
        window = max(1, len(rss) // 20)
        marks = [int(len(rss) * f) for f in (0.1, 0.25, 0.5, 0.75, 1.0)]
        profile = ", ".join(f"step {m}: {statistics.median(rss[max(0, m - window) : m]):.0f}" for m in marks)
        print(f"resident memory (MiB, median of the {window} steps before): {profile}")
        failures = []
        if growth > args.max_growth_mib:
            failures.append(f"resident memory grew by {growth:.1f} MiB (limit {args.max_growth_mib:g})")
        if final_backups != args.rolling_count or max(backup_counts or [0]) > args.rolling_count:
            failures.append(f"backup folder held {max(backup_counts or [0])}/{final_backups} backups")
        if temp_left:
            failures.append(f"temp folders left: {temp_left}")
        for failure in failures:
            print(f"FAIL: {failure}")
        print("PASS" if not failures else "")
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
