"""Evaluation mode for a whole model: used by validation loss and by sampling."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(model):
    """No dropout and no autograd while measuring; every module part of the model keeps its train flag after."""
    parts = [part for part in vars(model).values() if isinstance(part, torch.nn.Module)]
    flags = [part.training for part in parts]
    try:
        for part in parts:
            part.eval()
        with torch.no_grad():
            yield
    finally:
        for part, flag in zip(parts, flags):
            part.train(flag)
