"""Host buffers of exactly the size asked for, page-locked where the device copies from them.

PyTorch's pinned allocator (`torch.empty(..., pin_memory=True)`) rounds every block up to a power of two so that
freed blocks can be reused for other sizes: a 320 MiB block input of A14B at 832x480x81 takes 512 MiB, 40 of them
20 GiB instead of 12.5. The trainer's own long-lived buffers (block swapping's staging window, activation
offloading's slots) are reused by the trainer itself and need no such rounding. They are anonymous pages of
exactly the size asked for (rounded to a page), registered with the CUDA (or HIP) runtime, as PyTorch's
distributed checkpoint staging registers its buffers (`torch.cuda.cudart().cudaHostRegister`). Where registering
fails (a runtime without it), the buffer comes from PyTorch's pinned allocator, rounded, and a warning says so once:
the host-memory plan (modules/memory/host.py) counts exact sizes.

Unpinned buffers (CPU runs, tests) are the same mapping without the registration, so the CPU runs every line but
the runtime call.
"""

from __future__ import annotations

import logging
import mmap
import threading
from dataclasses import dataclass, field

import torch

log = logging.getLogger("wan_trainer.memory")

PAGE = mmap.PAGESIZE
_CUDA_HOST_REGISTER_PORTABLE = 1  # usable from every device's context, as PyTorch's own registration does
_WARNED = threading.Event()
_PINNED = {"bytes": 0, "peak": 0}  # page-locked bytes these buffers hold now, and the most they held at once
_PINNED_LOCK = threading.Lock()


def pinned_bytes() -> tuple[int, int]:
    """(now, peak) page-locked bytes held by host buffers: what a GPU run measures against the plan's pinned terms."""
    with _PINNED_LOCK:
        return _PINNED["bytes"], _PINNED["peak"]


def _count_pinned(delta: int) -> None:
    with _PINNED_LOCK:
        _PINNED["bytes"] += delta
        _PINNED["peak"] = max(_PINNED["peak"], _PINNED["bytes"])


def page_rounded(nbytes: int) -> int:
    return max(-(-nbytes // PAGE) * PAGE, PAGE)


@dataclass(eq=False)
class HostBuffer:
    """`tensor`: `nbytes` of uint8 host memory; `held`: what it takes from the machine (the rounded size when it
    had to come from PyTorch's pinned allocator). Release with `close()`, after the device stopped reading it."""

    tensor: torch.Tensor
    held: int
    pinned: bool
    registered: bool = False
    _region: mmap.mmap | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return self.tensor.numel()

    def close(self) -> None:
        if self.registered:
            torch.cuda.synchronize()  # a copy out of it may still be queued
            torch.cuda.cudart().cudaHostUnregister(self.tensor.data_ptr())
            self.registered = False
        if self.pinned and self.held:
            _count_pinned(-self.held)
            self.held = 0
        # The mapping goes when the last view of it does (the tensor's storage holds the region's buffer).
        self.tensor, self._region = torch.empty(0, dtype=torch.uint8), None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the runtime may already be gone
            pass


def host_buffer(nbytes: int, pin: bool) -> HostBuffer:
    """`nbytes` (rounded up to a page) of fresh host memory; page-locked where `pin`."""
    size = page_rounded(nbytes)
    tensor, region = _anonymous_pages(size)
    if not pin:
        return HostBuffer(tensor, size, pinned=False, _region=region)
    if _register(tensor.data_ptr(), size):
        _count_pinned(size)
        return HostBuffer(tensor, size, pinned=True, registered=True, _region=region)
    del tensor, region  # unmapped with its last view (closing it now would fail while the view's export lives)
    if not _WARNED.is_set():
        _WARNED.set()
        log.warning(
            "could not page-lock host buffers at their exact size (cudaHostRegister failed): they come from "
            "PyTorch's pinned allocator, rounded up to a power of two, so host memory runs above the plan"
        )
    _count_pinned(_power_of_two(size))
    return HostBuffer(torch.empty(size, dtype=torch.uint8, pin_memory=True), _power_of_two(size), pinned=True)


def _anonymous_pages(size: int) -> tuple[torch.Tensor, mmap.mmap | None]:
    """Page-aligned private memory of its own mapping, unmapped when its last view goes (not a piece of the heap
    that would stay in the process after it is freed); where mmap has no private flag (Windows), the allocator's."""
    if not hasattr(mmap, "MAP_PRIVATE"):
        return torch.empty(size, dtype=torch.uint8), None
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return torch.frombuffer(region, dtype=torch.uint8), region


def _register(pointer: int, size: int) -> bool:
    try:
        return int(torch.cuda.cudart().cudaHostRegister(pointer, size, _CUDA_HOST_REGISTER_PORTABLE)) == 0
    except (AttributeError, RuntimeError, OSError):
        return False


def _power_of_two(size: int) -> int:
    return 1 << (size - 1).bit_length()
