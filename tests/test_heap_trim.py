"""trim_heap (modules/util/heap.py): temporaries freed between allocations that stay leave the process.

This is what int8/nf4 loading relies on (storage.quantiser_for trims after each quantised linear): without it,
glibc keeps the freed pages of bitsandbytes' temporaries in its heap, block after block (docs/benchmarks.md)."""

from __future__ import annotations

import gc

import torch

from modules.util.heap import trim_heap
from tests.process_memory import anonymous_resident

MIB = 2**20


def test_freed_temporaries_between_kept_tensors_leave_the_process():
    larger = torch.ones(16 * MIB, dtype=torch.uint8)  # freed: glibc then serves blocks this size from its heap
    del larger
    kept, temporaries = [], []
    for _ in range(150):  # as a quantiser does: a large temporary, then a small result that stays
        temporaries.append(torch.ones(MIB, dtype=torch.uint8))
        kept.append(torch.ones(4096, dtype=torch.uint8))
    holding = anonymous_resident()
    del temporaries
    gc.collect()
    assert trim_heap()  # glibc: this suite runs on Linux
    gone = holding - anonymous_resident()
    assert gone > 140 * MIB, gone / MIB  # all but a few of the 150 MiB, whether freed at once or only by the trim
    assert len(kept) == 150 and all(int(t[0]) == 1 for t in kept)  # what stays is untouched
