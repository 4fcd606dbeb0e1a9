"""Which device and autocast dtype to train with."""

from __future__ import annotations

import os

import torch

from modules.util.dtype_names import DTYPE_NAMES
from modules.util.errors import ConfigError

# Every dtype name a setting accepts, as torch dtypes (weights, autocast, saving).
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}


def resolve_device(name: str) -> torch.device:
    """'auto' picks the GPU when there is one (ROCm builds of torch also report as 'cuda')."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"training.device: {name!r} was asked for, but torch sees no CUDA/ROCm GPU; use 'auto' or 'cpu'"
        )
    return device


def autocast(device: torch.device, dtype_name: str):
    """Mixed precision for the forward pass; a no-op for float32."""
    dtype = DTYPES[dtype_name]
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)


# Run on any device *as if* a GPU of this many GiB were present: every memory decision (memory.vae_tiling=auto,
# the run-start fit warning, the out-of-memory advice, the window's verdict, diagnostics.json) asks
# gpu_capacity_gib() and so takes its GPU branch on a CPU machine. On a real GPU it replaces the card's size in
# those decisions (it does not cap the allocator). docs/benchmarks.md "First GPU run".
PRETEND_GPU_ENV = "WAN_TRAINER_PRETEND_GPU_GIB"


def pretend_gpu_gib() -> float | None:
    value = os.environ.get(PRETEND_GPU_ENV, "").strip()
    if not value:
        return None
    try:
        gib = float(value)
    except ValueError:
        gib = -1.0
    if not gib > 0:
        from modules.util.errors import ConfigError

        raise ConfigError(
            f"environment variable {PRETEND_GPU_ENV}={value!r}: expected a positive number of GiB (e.g. 24). "
            f"Fix: set it to the GPU size to plan for, or unset it to use the GPU found."
        )
    return gib


def gpu_capacity_gib(device: torch.device | None = None) -> float | None:
    """Total memory of the GPU `device` (None: the first GPU) in GiB; None where there is no GPU, unless
    WAN_TRAINER_PRETEND_GPU_GIB says how large a GPU to act as if present. The one capacity query of the trainer."""
    pretend = pretend_gpu_gib()
    if pretend is not None:
        return pretend
    if device is None:
        if not torch.cuda.is_available():
            return None
        device = torch.device("cuda", 0)
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30
