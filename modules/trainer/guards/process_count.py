"""`--num-processes N` checked before any process starts: each process takes one GPU (or, without GPUs, one CPU
core) and holds its own copy of the model in host memory while it loads, so N must be at least 1, at most the
devices present, and N copies must fit the memory available now. Refused with a ConfigError naming the option,
what was found and the fix; nothing is started.
"""

from __future__ import annotations

import os
from pathlib import Path

from modules.config.validation import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".gguf")


def check_process_count(count: int, config, cuda_devices: int, cpu_cores: int, available_bytes: int | None) -> None:
    if count < 1:
        raise ConfigError(
            f"--num-processes {count}: expected at least 1 (one process per GPU). Fix: leave it out for one "
            "process, or give the number of GPUs to use."
        )
    if count == 1:
        return
    on_gpu = cuda_devices > 0 and config.training.device != "cpu"
    devices, kind = (cuda_devices, "GPU(s)") if on_gpu else (cpu_cores, "CPU core(s) (no GPU is used)")
    if count > devices:
        raise ConfigError(
            f"--num-processes {count}: this machine has {devices} {kind}; each process needs one of its own. "
            f"Fix: use --num-processes {devices} or fewer."
        )
    per_process = model_file_bytes(config)
    if available_bytes is not None and per_process and count * per_process > available_bytes:
        fitting = max(1, available_bytes // per_process)
        raise ConfigError(
            f"--num-processes {count}: each process loads the model into host memory ({_gib(per_process)}, the "
            f"size of its weight files), {_gib(count * per_process)} in all, but only {_gib(available_bytes)} is "
            f"available. Fix: use --num-processes {fitting} or fewer, or free host memory."
        )


def machine_counts() -> tuple[int, int, int | None]:
    """(CUDA devices, CPU cores this process may use, host memory available in bytes or None if unknown)."""
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cuda, cores, available_memory()


def available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def model_file_bytes(config) -> int:
    """Bytes of the local weight files the run loads (0 when the model is a hub id: nothing to measure yet)."""
    model = config.model
    paths = [model.base_path, model.transformer_path, model.transformer_2_path, model.vae_path]
    paths.append(model.text_encoder_path)
    files: set[Path] = set()
    for value in filter(None, paths):
        path = Path(value)
        if path.is_file():
            files.add(path.resolve())
        elif path.is_dir():
            files.update(p.resolve() for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    return sum(p.stat().st_size for p in files)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
