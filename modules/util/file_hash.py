"""SHA-256 of a file's bytes, computed once per (path, size, modification time) in a process."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime are part of the cache key only
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
