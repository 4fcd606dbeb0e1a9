"""Giving freed heap memory back to the system (glibc's `malloc_trim`).

glibc raises its mmap threshold after the first large free, so later temporaries of up to 32 MiB come from the heap,
and the heap keeps their pages when they are freed between allocations that stay (bitsandbytes' nf4 quantiser frees
~1 GB of temporaries per linear between the packed weights a load keeps: +20 to 110 MiB per A14B block,
docs/benchmarks.md), and an encoder of several GiB released after caching leaves its pages there too. Trimming
after each such step returns them. Elsewhere (macOS, musl, Windows) a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Return the heap's free pages to the system; False where the C library has no malloc_trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
