"""HostSlotPool: host buffers lent to the block inputs activation offloading parks, and lent again next step.

A training step parks one input per checkpointed block (40 for A14B), all of one shape, and brings each back during
the backward pass; the next step parks the same number again. The pool keeps the buffers between steps instead of
asking an allocator 40 times a step: one slot per input parked at once, each exactly the size of the largest input
it held (modules/module/host_buffer.py: page-locked on CUDA without the pinned allocator's power-of-two rounding, so
the plan's "offloaded block inputs" term is their exact size). When a larger bucket arrives, free slots too small
for it are dropped rather than kept beside the new ones, so the pool never holds more than one slot per input parked
at once. Both A14B experts share one pool: they never run in the same step.

A slot is given back when its parked input is freed (after its block's backward, or with a graph that was never
run backward). It can be lent again at once: on CUDA the copy into it is queued on the offload stream, behind the
copy out of it, and that stream waits for the compute stream first (activation_offload.py), so the device finishes
reading a slot before anything overwrites it. Dropping a pinned slot waits for the device (HostBuffer.close).
"""

from __future__ import annotations

import threading
import weakref

import torch

from modules.module.host_buffer import HostBuffer, host_buffer


class HostSlotPool:
    def __init__(self, pin: bool):
        self.pin = pin
        self._free: list[HostBuffer] = []
        self._lent: set[HostBuffer] = set()
        # Slots come back from the autograd engine's threads, and from a collection that may run inside `lend`.
        self._lock = threading.RLock()
        self.created = 0  # slots ever made: a step that finds its slots free makes none

    @classmethod
    def shared(cls, pin: bool) -> HostSlotPool:
        """One pool per kind for every transformer alive that holds it (an A14B run's two experts)."""
        pool = _SHARED.get(pin)
        if pool is None:
            pool = _SHARED[pin] = cls(pin)
        return pool

    @property
    def held_bytes(self) -> int:
        """Host memory the pool takes, lent and free."""
        with self._lock:
            return sum(slot.held for slot in (*self._free, *self._lent))

    @property
    def exact(self) -> bool:
        """Every slot holds its own size (page-locked by registration where pinned, not by the rounding allocator):
        what the GPU acceptance run checks, since the CPU cannot."""
        with self._lock:
            slots = (*self._free, *self._lent)
        return all(slot.held == slot.nbytes and (slot.registered or not self.pin) for slot in slots)

    @property
    def lent(self) -> int:
        with self._lock:
            return len(self._lent)

    def lend(self, shape: torch.Size, dtype: torch.dtype, owner: object) -> torch.Tensor:
        """A host tensor of `shape` and `dtype` (contents undefined), given back when `owner` is freed."""
        nbytes = shape.numel() * dtype.itemsize
        with self._lock:
            fitting = [slot for slot in self._free if slot.nbytes >= nbytes]
            if fitting:
                slot = min(fitting, key=lambda candidate: candidate.nbytes)
                self._free.remove(slot)
            else:
                self._drop(self._free)  # too small for this bucket; a new slot replaces each
                self._free = []
                slot = host_buffer(nbytes, self.pin)
                self.created += 1
            self._lent.add(slot)
        weakref.finalize(owner, self._give_back, slot)
        return slot.tensor[:nbytes].view(dtype).view(shape)

    def release_free(self) -> None:
        """Give the free slots' memory back to the machine (the lent ones follow when they come back)."""
        with self._lock:
            self._drop(self._free)
            self._free = []

    def _give_back(self, slot: HostBuffer) -> None:
        with self._lock:
            self._lent.discard(slot)
            self._free.append(slot)

    @staticmethod
    def _drop(slots: list[HostBuffer]) -> None:
        for slot in slots:
            slot.close()  # a pinned one waits for the device first


_SHARED: weakref.WeakValueDictionary[bool, HostSlotPool] = weakref.WeakValueDictionary()
