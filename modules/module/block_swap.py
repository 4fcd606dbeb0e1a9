"""Block swapping: the frozen weights of some blocks of a stack live in CPU memory and visit the device to run.

`BlockSwapper(blocks, swapped)` takes an `nn.ModuleList` of blocks that run one after the other (a transformer's)
and the indices of the blocks to swap. Every frozen tensor of those blocks (parameters that do not require grad,
and buffers) lives in ordinary CPU memory: where it already is when it is on the CPU (a weight mapped from its file,
modules/module/mapped_weights.py, stays mapped), else a CPU copy. Tensors that train (LoRA adapters, trained
weights) stay where the module is, with their optimizer state.

Host-to-device copies go through a `StagingBuffer` of `window` slots of one block each, allocated once (pinned where
CUDA is available): a block's tensors are copied into a slot (a CPU memcpy) and from there to the device
(asynchronous, at full PCIe speed, since the slot is page-locked). Pinned memory is bounded by the window whatever the
number of swapped blocks, instead of a pinned copy of every swapped tensor (each rounded up to a power of two by
PyTorch's caching host allocator). On the CPU the staging is off unless asked for (`staging=True`, for tests).

When a swapped block runs, its frozen tensors are copied to the device of its input just before, and dropped right
after: in forward order during the forward pass (block i's pre-hook also starts the copy of the next blocks, up to
`window` swapped blocks on the device at once), in reverse order during the backward pass. On CUDA the copies run on
a separate stream and the compute stream waits on an event, so the copy of block i+1 overlaps the compute of
block i; elsewhere the same code copies synchronously.

How the backward pass finds the weights again: autograd keeps a reference to each frozen weight it saved (the
parameter itself, not its data), so a weight reloaded into the same parameter before the block's backward is what
that backward reads. Two identity autograd functions mark the edges of each block in the graph: the one on its
output runs just before the block's backward (load it, start loading the block before it), the one on its input
just after (drop it). With gradient checkpointing the recomputation runs inside the backward, after the load, so
it finds the block resident and copies nothing. Whatever is still resident when the backward pass ends is dropped.

`Module.to()` / `_apply` on a block skips the swapped tensors (they stay in CPU memory), so moving a whole model
between devices, as expert offloading does, moves only the resident part.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from modules.module.host_buffer import host_buffer
from modules.module.mapped_weights import remembered_source
from modules.util.errors import UserError

# kind: "copy" (a block's frozen tensors copied to the device) or "release" (dropped); phase: "forward"/"backward".
Observer = Callable[[str, int, str, frozenset], None]


class BlockSwapError(UserError, ValueError):
    """A block cannot be swapped (the message names the tensor and why)."""


@dataclass
class _Slot:
    """One swapped tensor: where it is registered, and its CPU copy."""

    module: nn.Module
    name: str
    is_parameter: bool
    storage: torch.Tensor


@dataclass
class _Resident:
    copies: list[torch.Tensor]
    event: object | None  # torch.cuda.Event of the copy, None for synchronous copies
    in_use: bool = False
    streams: set = field(default_factory=set)


_ALIGN = 64  # bytes: every tensor in a staging slot starts at a multiple, so any dtype can be viewed there


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def staged_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes a staging slot needs for these tensors, each at an aligned offset."""
    return sum(_aligned(t.numel() * t.element_size()) for t in tensors)


class StagingBuffer:
    """`slots` slots of `slot_bytes` in one allocation (pinned where `pin`), reused in turn: a slot is written again
    only after the device copy out of it finished (its CUDA event), so at most `slots` blocks are in flight."""

    def __init__(self, slot_bytes: int, slots: int, pin: bool):
        self.slot_bytes, self.slots = slot_bytes, slots
        # Exactly its size, page-locked without the pinned allocator's power-of-two rounding (host_buffer.py).
        self._host = host_buffer(slot_bytes * slots, pin)
        self.buffer = self._host.tensor[: slot_bytes * slots]
        self._events: list[object | None] = [None] * slots
        self._next = 0
        self.staged = 0  # tensors copied through the buffer (tests, benchmarks)

    @classmethod
    def shared(cls, slot_bytes: int, slots: int, pin: bool) -> StagingBuffer:
        """One buffer per size for every swapper alive (an A14B run's two experts, which never run at once, and the
        sampler's): pinned memory is one window, not one per expert. Sharing is safe because a slot is reused only
        after the copy out of it finished, whoever staged it."""
        key = (slot_bytes, slots, pin)
        buffer = _SHARED_STAGING.get(key)
        if buffer is None:
            buffer = _SHARED_STAGING[key] = cls(slot_bytes, slots, pin)
        return buffer

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()

    def stage(self, tensors: list[torch.Tensor]) -> tuple[int, list[torch.Tensor]]:
        """Copy `tensors` into the next free slot; returns the slot and the views of them there."""
        if staged_bytes(tensors) > self.slot_bytes:
            raise ValueError(f"staging: {staged_bytes(tensors)} bytes do not fit a {self.slot_bytes}-byte slot")
        slot, self._next = self._next, (self._next + 1) % self.slots
        if self._events[slot] is not None:  # the copy out of this slot (`slots` blocks ago) must have finished
            self._events[slot].synchronize()
            self._events[slot] = None
        offset, views = slot * self.slot_bytes, []
        for tensor in tensors:
            size = tensor.numel() * tensor.element_size()
            view = self.buffer[offset : offset + size].view(tensor.dtype).view(tensor.shape)
            views.append(view.copy_(tensor))
            offset += _aligned(size)
        self.staged += len(tensors)
        return slot, views

    def copied_out(self, slot: int, event: object | None) -> None:
        """The device copy out of `slot` was queued; `event` marks its end (None: it already ended)."""
        self._events[slot] = event


_SHARED_STAGING: weakref.WeakValueDictionary[tuple, StagingBuffer] = weakref.WeakValueDictionary()


def _in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


class _BeforeBlockBackward(torch.autograd.Function):
    """Identity on a block's output; its backward runs just before the block's own backward."""

    @staticmethod
    def forward(ctx, tensor, swapper, index):
        ctx.swapper, ctx.index = swapper, index
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        ctx.swapper._enter_backward(ctx.index, grad.device)
        return grad, None, None


class _AfterBlockBackward(torch.autograd.Function):
    """Identity on a block's input; its backward runs just after the block's own backward."""

    @staticmethod
    def forward(ctx, tensor, swapper, index):
        ctx.swapper, ctx.index = swapper, index
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        ctx.swapper._release(ctx.index, "backward")
        return grad, None, None


class BlockSwapper:
    def __init__(
        self,
        blocks: nn.ModuleList,
        swapped: Iterable[int],
        *,
        window: int = 2,
        keep: Callable[[str, torch.Tensor], bool] | None = None,
        observer: Observer | None = None,
        staging: bool | None = None,
    ) -> None:
        """`window`: swapped blocks on the device at once (the running one and those being copied), at least 1.
        `keep(name, tensor)`: tensors that stay with the module; default: parameters that require grad.
        `staging`: copy through a bounded staging buffer (default: where CUDA is available, pinned there)."""
        if window < 1:
            raise BlockSwapError(f"block swapping: window {window}; at least 1 (the running block)")
        self.blocks = blocks
        self.swapped = sorted(set(swapped))
        bad = [i for i in self.swapped if not 0 <= i < len(blocks)]
        if bad:
            raise BlockSwapError(f"block swapping: blocks {bad} do not exist (the stack has {len(blocks)} blocks)")
        self.window = window
        self.observer = observer
        self.pin = torch.cuda.is_available()
        keep = keep or (lambda name, tensor: tensor.requires_grad)
        self.slots: dict[int, list[_Slot]] = {i: self._take(i, keep) for i in self.swapped}
        use_staging = self.pin if staging is None else staging
        self.staging: StagingBuffer | None = None
        if use_staging and self.slots:
            slot_bytes = max(staged_bytes(slot.storage for slot in slots) for slots in self.slots.values())
            self.staging = StagingBuffer.shared(slot_bytes, window, self.pin)
        self.resident: dict[int, _Resident] = {}
        self.input_needs_grad: dict[int, bool] = {}
        self._streams: dict[torch.device, object] = {}
        self._callback_task: int | None = None
        self._handles = []
        for index, block in enumerate(blocks):
            self._handles.append(
                block.register_forward_pre_hook(self._make_pre_hook(index), with_kwargs=True, prepend=True)
            )
            if index in self.slots:
                self._handles.append(block.register_forward_hook(self._make_post_hook(index)))
                block._apply = self._make_apply(block, index)

    # ---- setup ----------------------------------------------------------------------------------
    def _take(self, index: int, keep) -> list[_Slot]:
        """Block `index`'s frozen tensors in CPU memory (their mapping or their own CPU tensor where they have one,
        else a copy), recorded."""
        slots = []
        for module_name, module in self.blocks[index].named_modules():
            for registry, is_parameter in ((module._parameters, True), (module._buffers, False)):
                for name, tensor in registry.items():
                    if tensor is None:
                        continue
                    full = f"{module_name}.{name}" if module_name else name
                    if keep(full, tensor):
                        continue
                    if is_parameter and tensor.requires_grad:
                        raise BlockSwapError(
                            f"block {index}: {full} trains (requires grad), so it cannot live in CPU memory between "
                            "uses; keep it on the device (the `keep` rule) or do not swap this block"
                        )
                    if type(tensor) not in (torch.Tensor, nn.Parameter):
                        raise BlockSwapError(
                            f"block {index}: {full} is a {type(tensor).__name__}, whose state lives outside the "
                            "tensor data (as in bitsandbytes' quantised weights); it cannot be swapped by copying"
                        )
                    # A CPU tensor is its own storage (the resident copies are the fresh ones); a weight that left its
                    # file mapping for the device goes back to it rather than to a new copy.
                    mapped = remembered_source(module, name, tensor)
                    storage = mapped if mapped is not None else tensor.detach().to("cpu")
                    tensor.data = storage
                    slots.append(_Slot(module, name, is_parameter, storage))
        return slots

    def _make_apply(self, block: nn.Module, index: int):
        """`_apply` (what .to(), .cuda(), .float() run) for a swapped block: its swapped tensors are left alone."""
        original = type(block)._apply

        def apply(fn, recurse=True):
            removed = []
            for slot in self.slots[index]:
                registry = slot.module._parameters if slot.is_parameter else slot.module._buffers
                removed.append((registry, slot.name, registry.pop(slot.name)))
            try:
                return original(block, fn, recurse)
            finally:
                for registry, name, tensor in removed:
                    registry[name] = tensor

        return apply

    def remove(self) -> None:
        """Undo the hooks; swapped tensors stay in CPU memory (a later .to() moves them like any other)."""
        for index in list(self.resident):
            self._release(index, "remove")
        for handle in self._handles:
            handle.remove()
        for index in self.slots:
            self.blocks[index].__dict__.pop("_apply", None)
        self._handles = []

    # ---- copies ---------------------------------------------------------------------------------
    def _copy_stream(self, device: torch.device):
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]

    def _copy_in(self, index: int, device: torch.device, phase: str) -> None:
        """Start copying block `index`'s frozen tensors to `device` (nothing if they are there already)."""
        if index not in self.slots or index in self.resident:
            return
        storages = [slot.storage for slot in self.slots[index]]
        slot = None
        if self.staging is not None:  # through the bounded (pinned) buffer: a memcpy, then the device copy
            slot, storages = self.staging.stage(storages)
        if device.type == "cuda":
            stream = self._copy_stream(device)
            with torch.cuda.stream(stream):
                copies = [s.to(device, non_blocking=True) for s in storages]
                event = torch.cuda.Event()
                event.record(stream)
        else:  # the same steps, synchronously (a fresh copy even from staging, which the next block overwrites)
            copies = [s.to(device, copy=True) for s in storages]
            event = None
        if slot is not None:
            self.staging.copied_out(slot, event)
        self.resident[index] = _Resident(copies, event)
        self._notify("copy", index, phase)

    def _use(self, index: int, device: torch.device, phase: str) -> None:
        """Block `index` is about to compute: its copy finished (for this stream) and its parameters point at it."""
        if index not in self.slots:
            return
        self._copy_in(index, device, phase)
        entry = self.resident[index]
        if device.type == "cuda":
            stream = torch.cuda.current_stream(device)
            if stream not in entry.streams:
                stream.wait_event(entry.event)
                for tensor in entry.copies:  # the allocator must not reuse them before this stream is done
                    tensor.record_stream(stream)
                entry.streams.add(stream)
        if not entry.in_use:
            for slot, copy in zip(self.slots[index], entry.copies):
                self._tensor(slot).data = copy
            entry.in_use = True

    def _release(self, index: int, phase: str) -> None:
        entry = self.resident.pop(index, None)
        if entry is None:
            return
        for slot in self.slots[index]:
            self._tensor(slot).data = slot.storage
        entry.copies.clear()
        self._notify("release", index, phase)

    def release_all(self) -> None:
        for index in list(self.resident):
            self._release(index, "end")

    @staticmethod
    def _tensor(slot: _Slot) -> torch.Tensor:
        return (slot.module._parameters if slot.is_parameter else slot.module._buffers)[slot.name]

    def _notify(self, kind: str, index: int, phase: str) -> None:
        if self.observer is not None:
            self.observer(kind, index, phase, frozenset(self.resident))

    def _upcoming(self, index: int, step: int) -> list[int]:
        """Swapped blocks after `index` in the direction `step`, as many as fit the window beside the running one."""
        found, position = [], index + step
        while 0 <= position < len(self.blocks) and len(found) < self.window - 1:
            if position in self.slots:
                found.append(position)
            position += step
        return found

    # ---- hooks ----------------------------------------------------------------------------------
    def _make_pre_hook(self, index: int):
        def pre_hook(module, args, kwargs):
            first = _first_tensor(args, kwargs)
            if first is None:
                return None
            device = first.device
            backward = _in_backward()
            if index in self.slots:
                self._use(index, device, "backward" if backward else "forward")
            if not backward:
                for upcoming in self._upcoming(index, +1):
                    self._copy_in(upcoming, device, "forward")
            if index in self.slots and torch.is_grad_enabled():
                self.input_needs_grad[index] = (
                    bool(args) and isinstance(args[0], torch.Tensor) and args[0].requires_grad
                )
                if self.input_needs_grad[index]:
                    return (_AfterBlockBackward.apply(args[0], self, index), *args[1:]), kwargs
            return None

        return pre_hook

    def _make_post_hook(self, index: int):
        def post_hook(module, args, output):
            if _in_backward():
                return None  # a recomputation inside the backward pass: the block's backward still needs it
            self._release(index, "forward")
            if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad:
                return _BeforeBlockBackward.apply(output, self, index)
            return None

        return post_hook

    def _enter_backward(self, index: int, device: torch.device) -> None:
        task = torch._C._current_graph_task_id()
        if self._callback_task != task:  # once per backward pass: drop whatever is left at its end
            self._callback_task = task
            torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)
        self._use(index, device, "backward")
        if self.input_needs_grad.get(index, True):  # the backward goes on to the blocks before this one
            for upcoming in self._upcoming(index, -1):
                self._copy_in(upcoming, device, "backward")

    def _end_of_backward(self) -> None:
        self._callback_task = None
        self.release_all()
