"""Block swapping: the frozen weights of some blocks of a stack live in CPU memory and visit the device to run.

`BlockSwapper(blocks, swapped)` takes an `nn.ModuleList` of blocks that run one after the other (a transformer's)
and the indices of the blocks to swap. Every frozen tensor of those blocks (parameters that do not require grad,
and buffers) moves to CPU memory (pinned where CUDA is available, so copies can be asynchronous). Tensors that
train (LoRA adapters, trained weights) stay where the module is, with their optimizer state.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

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
    ) -> None:
        """`window`: swapped blocks on the device at once (the running one and those being copied), at least 1.
        `keep(name, tensor)`: tensors that stay with the module; default: parameters that require grad."""
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
        """Move block `index`'s frozen tensors to (pinned) CPU memory and record them."""
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
                    if self.pin:  # straight into page-locked memory: one CPU copy, not an extra one to pin
                        storage = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True).copy_(tensor.detach())
                    else:  # a CPU tensor is its own storage (the resident copies are the fresh ones)
                        storage = tensor.detach().to("cpu")
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
        if device.type == "cuda":
            stream = self._copy_stream(device)
            with torch.cuda.stream(stream):
                copies = [s.to(device, non_blocking=True) for s in storages]
                event = torch.cuda.Event()
                event.record(stream)
        else:  # the same steps, synchronously
            copies = [s.to(device, copy=True) for s in storages]
            event = None
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
