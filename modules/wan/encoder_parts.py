"""Encoders (UMT5, the VAE) read from their files when first used and released when their phase is over.

A run whose cache is complete never needs UMT5 (~11 GiB in bf16) or the VAE: they are loaded on first use, not
with the model, and `WanModel.release_encoders` drops them again after caching, after the sample prompts are
encoded and after a sample's decode. What a part needs after every load (fp8 linears, VAE tiling, its device) is
recorded here and re-applied, so a part brought back is the part that was released.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from modules.util.heap import trim_heap

log = logging.getLogger("wan_trainer")


@dataclass
class EncoderPart:
    """One encoder: the module while resident, and how to read it again once released."""

    name: str
    module: nn.Module | None = None
    load: Callable[[], nn.Module] | None = None  # None: built in memory, it cannot be read again (never released)
    dtype: torch.dtype | None = None  # the dtype it loads in, known without loading it (cache keys)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # Applied after every load, in order: key -> function (a key set again replaces its function).
    after_load: dict[str, Callable[[nn.Module], None]] = field(default_factory=dict)
    reads: int = 0  # how many times its file was read in this process (reported, and checked by tests)

    def get(self) -> nn.Module:
        if self.module is None:
            if self.load is None:
                raise RuntimeError(f"{self.name} was released and has no file to read it from again")
            log.info("loading %s (first use in this phase)", self.name)
            module = self.load()
            module.requires_grad_(False)
            module.eval()
            for apply in self.after_load.values():
                apply(module)
            self.module = module.to(self.device)
            self.reads += 1
        return self.module

    def release(self) -> bool:
        """Drop the module (True) unless it cannot be read again; the caller must hold no reference to it."""
        if self.module is None or self.load is None:
            return False
        on_gpu = next(self.module.parameters(), torch.empty(0)).device.type == "cuda"
        self.module = None
        gc.collect()  # modules hold reference cycles (hooks, parent links): collect them now, not at some later step
        if on_gpu:
            torch.cuda.empty_cache()
        trim_heap()  # glibc keeps freed pages otherwise: after GiBs of encoder, memory the run cannot use
        return True

    def current_dtype(self) -> torch.dtype | None:
        return self.module.dtype if self.module is not None else self.dtype
