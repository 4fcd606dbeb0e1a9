"""Activation offloading: gradient checkpointing whose saved block inputs wait for the backward pass in CPU memory.

With gradient checkpointing, what stays alive between the forward and the backward pass is each block's input
(a hidden state of batch x tokens x width: 832x480x81 on A14B is 32,760 tokens x 5120 x 2 bytes = 320 MiB per block,
12.5 GiB for 40 blocks). `offloaded_checkpoint` is a drop-in `gradient_checkpointing_func` for diffusers models: it
moves the block's first input to the CPU (a differentiable copy, so its gradient flows back to the device) and
checkpoints a function that copies it back to the device before the block runs, in the forward pass and again in
the recomputation. The device copy of the input is then free as soon as the next block has started.
The other inputs (text states, timestep projection, rotary tables) are shared by every block and stay.

Copies are exact, so results are bit-equal to plain checkpointing. The price, per block and step, is five copies
of the block input's size (offload_copies_per_step, what the memory planner's traffic_per_step counts): out to
the CPU, back for the forward, back again for the recomputation, and the gradient's way out and back through the
two differentiable copies. On CUDA the first (the one the forward pass would wait for) goes into pinned memory on
a side stream, so it overlaps the next block's compute; the copies back wait on its event. Every copy is counted
in `TRAFFIC` (bytes and copies, on any device, the CPU included), which is how tests and benchmarks measure the
traffic per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

OFFLOAD_COPIES_PER_BLOCK = 5


def offload_copies_per_step(num_blocks: int) -> int:
    """Copies of one block input's size per step: five per block, but the first block's input needs no gradient
    (the patch embedding before it never trains), so its gradient makes no round trip."""
    return OFFLOAD_COPIES_PER_BLOCK * num_blocks - 2 if num_blocks else 0


@dataclass
class Traffic:
    copies: int = 0
    bytes: int = 0

    def add(self, tensor: torch.Tensor) -> None:
        self.copies += 1
        self.bytes += tensor.numel() * tensor.element_size()

    def reset(self) -> None:
        self.copies = self.bytes = 0


TRAFFIC = Traffic()
_SIDE_STREAMS: dict[torch.device, object] = {}


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of `tensor`; from CUDA into pinned memory on a side stream (the event travels with it)."""
    TRAFFIC.add(tensor)
    if tensor.device.type != "cuda":
        return tensor.to("cpu", copy=True)
    device = tensor.device
    stream = _SIDE_STREAMS.get(device)
    if stream is None:
        stream = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))  # the block input is complete
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    with torch.cuda.stream(stream):
        host.copy_(tensor, non_blocking=True)
    tensor.record_stream(stream)  # its memory is not reused before the copy has read it
    host._offload_event = stream.record_event()
    return host


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    TRAFFIC.add(tensor)
    event = getattr(tensor, "_offload_event", None)
    if event is not None:
        torch.cuda.current_stream(device).wait_event(event)
        return tensor.to(device, non_blocking=True)
    if device.type == "cuda" and device in _SIDE_STREAMS:  # pinned without its event: wait for every copy out
        torch.cuda.current_stream(device).wait_stream(_SIDE_STREAMS[device])
    return tensor.to(device, copy=True)


class _ToHost(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        ctx.device = tensor.device
        return _to_host(tensor)

    @staticmethod
    def backward(ctx, grad):
        return _to_device(grad, ctx.device)


class _ToDevice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, device):
        return _to_device(tensor, device)

    @staticmethod
    def backward(ctx, grad):
        return _to_host(grad), None


def offloaded_checkpoint(module: torch.nn.Module, *args):
    hidden, rest = args[0], args[1:]
    device = hidden.device

    def run(stored: torch.Tensor, *others):
        return module(_ToDevice.apply(stored, device), *others)

    return checkpoint(run, _ToHost.apply(hidden), *rest, use_reentrant=False)


def offload_activations(transformer) -> None:
    """Make an already checkpointing diffusers transformer keep its block inputs in CPU memory."""
    if not getattr(transformer, "gradient_checkpointing", False):
        raise ValueError("activation offloading works on checkpointed blocks: enable gradient checkpointing first")
    transformer.enable_gradient_checkpointing(offloaded_checkpoint)
