"""Cache entries hold only finite numbers: checked when an entry is written and whenever it is read.

A NaN from an encoder (for example a VAE overflowing in float16) is refused at write, naming the source
file; an entry that is damaged later (valid header, NaN or Inf tensors) is reported by the reader naming
the entry and its source, and is rebuilt by the cache pass before training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from modules.data.sources.concepts import DataError


def nonfinite_names(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors in `tensors` that hold NaN or Inf."""
    return [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def refuse_nonfinite(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None) -> None:
    bad = nonfinite_names(tensors)
    if bad:
        source = (metadata or {}).get("source") or (metadata or {}).get("caption") or "?"
        raise DataError(
            f"{source}: the encoder produced NaN/Inf ({', '.join(bad)}) for the cache entry {path}, so it was not "
            "written. Fix: use model.vae_dtype / model.text_encoder_dtype float32 (float16 can overflow), or remove "
            "this file from its concept."
        )


def entry_source(path: Path) -> str:
    """The source a cache entry was made from, as its metadata records it ('source' file or 'caption')."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception:  # the entry is being reported as bad already; its source is a courtesy
        return "source unknown"
    if "source" in metadata:
        return f"from {metadata['source']}"
    return f"caption {metadata['caption']!r}" if "caption" in metadata else "source unknown"
