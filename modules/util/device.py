"""Which device and autocast dtype to train with."""

from __future__ import annotations

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
