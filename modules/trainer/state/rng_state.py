"""Every random number generator a training step draws from, captured and restored for exact resumes.

Python's and numpy's states are plain numbers (kept as JSON); torch's are byte tensors (kept in
safetensors). The trainer's own torch.Generator (noise, noise levels, image-to-video draws) is the one
that matters most; the global ones cover dropout and anything a plugin draws without a generator.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

log = logging.getLogger("wan_trainer.rng")


def capture_rng_state(generator: torch.Generator) -> tuple[dict, dict[str, torch.Tensor]]:
    """(JSON-able states, tensor states) of python, numpy, torch CPU, every CUDA device and `generator`."""
    version, python_state, gauss_next = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    as_json = {
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
        "numpy": {
            "kind": kind,
            "keys": [int(k) for k in keys],
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    tensors = {"torch_cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    return as_json, tensors


def restore_rng_state(as_json: dict, tensors: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    python = as_json["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy_state = as_json["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            np.array(numpy_state["keys"], dtype=np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(tensors["torch_cpu"])
    generator.set_state(tensors["generator"])
    cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            log.warning(
                "the backup holds %d CUDA RNG states but %d devices are visible; restoring the common ones",
                len(cuda_states),
                torch.cuda.device_count(),
            )
        for index, state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    elif cuda_states:
        log.warning("the backup was written with CUDA but no CUDA device is visible; its CUDA RNG states are unused")


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device), so adapter initialisation and dropout are
    the same in every run with this seed; resumed runs then overwrite these states from the backup."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
