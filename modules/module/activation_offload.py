"""Activation offloading: gradient checkpointing whose saved block inputs wait for the backward pass in CPU memory.

With gradient checkpointing, what stays alive between the forward and the backward pass is each block's input
(a hidden state of batch x tokens x width: 832x480x81 on A14B is 32,760 tokens x 5120 x 2 bytes = 320 MiB per block,
12.5 GiB for 40 blocks). `offloaded_checkpoint` is a drop-in `gradient_checkpointing_func` for diffusers models:
the checkpoint saves the block's first input for the recomputation, and a saved-tensor hook parks that copy in CPU
memory and brings it back when the backward pass recomputes the block. The forward pass and the gradients run on
the device as without offloading. The other inputs (text states, timestep projection, rotary tables) are shared by
every block and stay.

Copies are exact, so results are bit-equal to plain checkpointing. The price is two copies of the block input per block
and step (offload_copies_per_step, what the memory planner's traffic_per_step counts): out after the block's forward,
back before its recomputation. (The first version moved the input through differentiable copies: five per block, the
gradient's round trip included.) Each input is parked in a slot of a pool (host_slots.py) that is lent again next step:
exactly the input's size, page-locked on CUDA without PyTorch's power-of-two rounding (40 x 320 MiB take 12.5 GiB, not
20). On CUDA the copy out runs on a side stream, so it overlaps the following blocks' compute; while the backward pass
recomputes a block, the input of the block before it is already being copied back on that stream (prefetch). Every copy
is counted in `TRAFFIC` (bytes and copies, on any device, the CPU included), which is how tests and benchmarks measure
the traffic per step.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from modules.module.host_slots import HostSlotPool

OFFLOAD_COPIES_PER_BLOCK = 2  # out after the block's forward, back before its recomputation


def offload_copies_per_step(num_blocks: int) -> int:
    """Copies of one block input's size per training step."""
    return OFFLOAD_COPIES_PER_BLOCK * num_blocks


@dataclass
class Traffic:
    copies: int = 0
    bytes: int = 0
    prefetched: int = 0  # copies back started one block ahead

    def add(self, tensor: torch.Tensor) -> None:
        self.copies += 1
        self.bytes += tensor.numel() * tensor.element_size()

    def reset(self) -> None:
        self.copies = self.bytes = self.prefetched = 0


TRAFFIC = Traffic()
_SIDE_STREAMS: dict[torch.device, object] = {}


def _to_host(tensor: torch.Tensor, host: torch.Tensor) -> torch.Tensor:
    """Copy `tensor` into `host` (a slot of the pool); from CUDA on a side stream (the event travels with it)."""
    TRAFFIC.add(tensor)
    if tensor.device.type != "cuda":
        return host.copy_(tensor)
    device = tensor.device
    stream = _SIDE_STREAMS.get(device)
    if stream is None:
        stream = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    # The block input is complete, and every copy back queued on the compute stream (out of a slot lent again
    # now) has read its slot before this copy overwrites it.
    stream.wait_stream(torch.cuda.current_stream(device))
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


@dataclass(eq=False)
class _Parked:
    """A block input waiting in CPU memory (a slot of the pool, given back when this is freed) for its block's
    recomputation. `previous` is the input parked before it (the block the backward pass recomputes next),
    prefetched to the device while this block's backward runs."""

    device: torch.device
    previous: weakref.ref | None = None
    host: torch.Tensor | None = None
    ready: torch.Tensor | None = None  # the device copy, when prefetched
    consumed: bool = False
    pool: HostSlotPool | None = None  # held while parked: the pool outlives the slots it lent

    @classmethod
    def park(cls, tensor: torch.Tensor) -> _Parked:
        pool = HostSlotPool.shared(pin=tensor.device.type == "cuda")
        parked = cls(tensor.device, _LAST_PARKED[0], pool=pool)
        parked.host = _to_host(tensor, pool.lend(tensor.shape, tensor.dtype, owner=parked))
        _LAST_PARKED[0] = weakref.ref(parked)  # weak: a finished step's inputs are freed with its graph
        return parked


_LAST_PARKED: list[weakref.ref | None] = [None]


def _prefetch(parked: _Parked) -> torch.Tensor:
    """Start the copy back of `parked` (on CUDA on the side stream, ordered after its copy out)."""
    TRAFFIC.prefetched += 1
    if parked.device.type != "cuda":
        return _to_device(parked.host, parked.device)
    TRAFFIC.add(parked.host)
    stream = _SIDE_STREAMS[parked.device]
    event = getattr(parked.host, "_offload_event", None)
    if event is not None:
        stream.wait_event(event)
    with torch.cuda.stream(stream):
        ready = parked.host.to(parked.device, non_blocking=True)
    ready._offload_event = stream.record_event()
    return ready


def _bring_back(parked: _Parked) -> torch.Tensor:
    parked.consumed = True
    tensor, parked.ready = parked.ready, None
    if tensor is None:
        tensor = _to_device(parked.host, parked.device)
    elif parked.device.type == "cuda":
        current = torch.cuda.current_stream(parked.device)
        current.wait_event(tensor._offload_event)
        tensor.record_stream(current)  # made on the side stream, used and freed on this one
    previous = parked.previous() if parked.previous is not None else None
    if previous is not None and not previous.consumed and previous.ready is None:
        previous.ready = _prefetch(previous)  # overlaps this block's recomputation and backward
    return tensor


def offloaded_checkpoint(module: torch.nn.Module, *args):
    """Checkpoint `module` with its first input parked in CPU memory until the recomputation needs it.

    The checkpoint saves its inputs for the recomputation as saved tensors, outside its own hooks, so the hooks
    here see exactly those: the block input goes to the CPU, the inputs every block shares stay. The forward pass
    and the gradient use the device tensor as they would without offloading; only the copy kept for the backward
    pass lives in CPU memory."""
    hidden = args[0]

    def pack(tensor: torch.Tensor):
        if tensor.data_ptr() == hidden.data_ptr() and tensor.shape == hidden.shape:
            return _Parked.park(tensor.detach())
        return tensor

    def unpack(saved):
        return _bring_back(saved) if isinstance(saved, _Parked) else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        return checkpoint(module, *args, use_reentrant=False)


def offload_activations(transformer) -> None:
    """Make an already checkpointing diffusers transformer keep its block inputs in CPU memory. The transformer
    holds the slot pools (pinned for CUDA, plain for the CPU; shared with any other transformer offloading), so
    their slots are reused step after step and go with the model."""
    if not getattr(transformer, "gradient_checkpointing", False):
        raise ValueError("activation offloading works on checkpointed blocks: enable gradient checkpointing first")
    transformer._offload_slot_pools = (HostSlotPool.shared(pin=True), HostSlotPool.shared(pin=False))
    transformer.enable_gradient_checkpointing(offloaded_checkpoint)


def offload_slot_pool(transformer, pin: bool) -> HostSlotPool | None:
    """The pool `offload_activations` gave `transformer` (tests and benchmarks read its slots)."""
    pools = getattr(transformer, "_offload_slot_pools", None)
    return None if pools is None else pools[0 if pin else 1]
