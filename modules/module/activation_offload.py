"""Activation offloading: gradient checkpointing whose saved block inputs wait for the backward pass in CPU memory.

With gradient checkpointing, what stays alive between the forward and the backward pass is each block's input
(a hidden state of batch x tokens x width: 832x480x81 on A14B is 32,760 tokens x 5120 x 2 bytes = 320 MiB per block,
12.5 GiB for 40 blocks). `offloaded_checkpoint` is a drop-in `gradient_checkpointing_func` for diffusers models: it
moves the block's first input to the CPU (a differentiable copy, so its gradient flows back to the device) and
checkpoints a function that copies it back to the device before the block runs, in the forward pass and again in
the recomputation. The device copy of the input is then free as soon as the next block has started.
The other inputs (text states, timestep projection, rotary tables) are shared by every block and stay.
Copies are exact, so results are bit-equal to plain checkpointing; the price is two copies per block and step.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def offloaded_checkpoint(module: torch.nn.Module, *args):
    hidden, rest = args[0], args[1:]
    device = hidden.device

    def run(stored: torch.Tensor, *others):
        return module(stored.to(device), *others)

    return checkpoint(run, hidden.to("cpu"), *rest, use_reentrant=False)


def offload_activations(transformer) -> None:
    """Make an already checkpointing diffusers transformer keep its block inputs in CPU memory."""
    if not getattr(transformer, "gradient_checkpointing", False):
        raise ValueError("activation offloading works on checkpointed blocks: enable gradient checkpointing first")
    transformer.enable_gradient_checkpointing(offloaded_checkpoint)
