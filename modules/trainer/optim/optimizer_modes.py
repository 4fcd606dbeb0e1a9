"""Schedule-free optimizers train on one point (y) and are evaluated at another (x, the average).

Samples, validation loss and saves must see x: `optimizer_eval_weights` switches the optimizer to eval mode
for the block and back afterwards. The way back restores the exact train-mode tensors saved on entry, because
schedule-free's own eval -> train interpolation is not exact in floating point: a run that samples would
otherwise drift from one that does not, and a resumed run from an uninterrupted one. Any other optimizer
passes through untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def has_eval_mode(optimizer) -> bool:
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the optimizer
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


@contextlib.contextmanager
def optimizer_eval_weights(optimizer) -> Iterator[None]:
    if optimizer is None or not has_eval_mode(optimizer):
        yield
        return
    inner = getattr(optimizer, "optimizer", optimizer)
    params = [p for group in inner.param_groups for p in group["params"]]
    saved = [p.detach().clone() for p in params]
    inner.eval()
    try:
        yield
    finally:
        inner.train()
        with torch.no_grad():
            for param, value in zip(params, saved):
                param.copy_(value)
