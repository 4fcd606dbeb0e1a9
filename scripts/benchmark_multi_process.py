"""Data-parallel scaling: training throughput (samples per second) of 2 processes / 1 process.

Both runs train the same LoRA on the same model (TI2V-5B structure, 4 layers, width 256) and demo clips with
the same batch per process, each process started with torch.multiprocessing and joined over gloo (2 processes)
or alone (1 process). Throughput is counted over the steps after the warm-up, from the main process's step
times. Ideal is 2.0; the gap is the gradient all-reduce, the loss reduction and waiting for the slower process.

On CPU it says little: the processes share the machine's cores and memory bandwidth, so the ratio mostly shows
how much of one core a process leaves unused. It is a check that the multi-process loop adds little, not a
measure of multi-GPU scaling; run it with `--device cuda` on a machine with 2 GPUs for that.

    python scripts/benchmark_multi_process.py [--steps 16] [--warmup 4] [--threads 1] [--device cpu]
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import torch

from modules.config.loading import config_from_dict
from modules.data.sources.demo_data import make_demo_data
from modules.util.errors import run_script
from modules.wan.tiny_models import write_tiny_model

TRANSFORMER = dict(num_layers=4, heads=4, head_dim=64)


def make_config(root: Path, steps: int, device: str) -> dict:
    return {
        "model": {"base_path": str(root / "model"), "transformer_dtype": "float32", "text_encoder_dtype": "float32"},
        "lora": {"rank": 16, "alpha": 16.0},
        "data": {
            "concepts": [{"path": str(root / "data")}],
            "resolution": 128,
            "frames": 17,
            "min_frames": 17,
            "cache_dir": str(root / "cache"),
        },
        "training": {
            "max_steps": steps,
            "batch_size": 1,
            "learning_rate": 1e-4,
            "train_dtype": "float32",
            "gradient_checkpointing": False,
            "device": device,
        },
        "output": {"workspace_dir": str(root / "run"), "tensorboard": False, "save_every_steps": 0},
        "sampling": {"samples": []},
    }


def train_timed(rank: int, world_size: int, port: int, config: dict, threads: int, out: str) -> None:
    if world_size > 1:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_WORLD_SIZE=str(world_size),
        )
    torch.set_num_threads(threads)
    from modules.trainer.generic_trainer import GenericTrainer

    trainer = GenericTrainer(config_from_dict(config))
    trainer.load_and_cache()
    trainer.set_up_training()
    times: list[float] = []
    trainer.step_callbacks.append(lambda progress, loss: times.append(time.perf_counter()))
    trainer.train()
    if rank == 0:
        Path(out).write_text(json.dumps(times))


def run(world_size: int, config: dict, threads: int, out: Path) -> list[float]:
    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(
        train_timed, args=(world_size, port, config, threads, str(out)), nprocs=world_size, start_method="spawn"
    )
    return json.loads(out.read_text())


def samples_per_second(times: list[float], warmup: int, samples_per_step: int) -> float:
    steady = times[warmup:]
    return samples_per_step * (len(steady) - 1) / (steady[-1] - steady[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_tiny_model("TI2V-5B", root / "model", transformer_size=TRANSFORMER)
        make_demo_data(root / "data")
        config = make_config(root, args.steps + args.warmup, args.device)
        # One process first: it also builds the cache, which the two-process run then only reads.
        one = samples_per_second(run(1, config, args.threads, root / "one.json"), args.warmup, 1)
        config["output"]["workspace_dir"] = str(root / "run2")
        two = samples_per_second(run(2, config, args.threads, root / "two.json"), args.warmup, 2)
    print(
        f"torch {torch.__version__}; device {args.device}; {args.threads} thread(s) per process; cores {os.cpu_count()}"
    )
    print(f"1 process:   {one:.2f} samples/s")
    print(f"2 processes: {two:.2f} samples/s")
    print(f"ratio 2/1:   {two / one:.2f} (ideal 2.0)")


if __name__ == "__main__":
    sys.exit(run_script(main))
