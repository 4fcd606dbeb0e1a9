"""A write that failed for lack of space, said as such: which folder, how much was needed, how much is free.

Disk full shows up as ENOSPC (no space), EDQUOT (quota) or EFBIG (a file-size limit), raised either as an
OSError or, from safetensors' Rust writer, as a SafetensorError whose text carries "os error N". The atomic
writers (modules/util/atomic.py) turn either into DiskFullError after removing their temp file, so the
previous good file stays and no partial file is left that could pass for a complete one.
"""

from __future__ import annotations

import errno
import re
import shutil
from pathlib import Path

from modules.util.errors import UserError

SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_RUST_OS_ERROR = re.compile(r"os error (\d+)")


class DiskFullError(UserError, RuntimeError):
    """A write failed for lack of space; the message names the folder, the space needed and the fix."""

    def __init__(self, message: str, folder: Path, needed_bytes: int | None):
        super().__init__(message)
        self.folder = folder
        self.needed_bytes = needed_bytes


def error_number(error: BaseException) -> int | None:
    """The OS error number behind `error` (an OSError, or a safetensors error quoting one), else None."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    match = _RUST_OS_ERROR.search(str(error))
    return int(match.group(1)) if match else None


def is_out_of_space(error: BaseException) -> bool:
    return error_number(error) in SPACE_ERRNOS


def free_bytes(folder: Path) -> int | None:
    """Free space for an unprivileged writer in `folder` (or its nearest existing parent); None if unknown."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(count: int | None) -> str:
    if count is None:
        return "an unknown amount"
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


def disk_full_error(
    error: BaseException, folder: Path, needed_bytes: int | None, what: str = "a file"
) -> DiskFullError:
    """The DiskFullError for `error` (which must satisfy is_out_of_space)."""
    folder = Path(folder)
    free = free_bytes(folder)
    cause = "a file-size limit (ulimit -f) was hit" if error_number(error) == errno.EFBIG else "the disk is full"
    needed = f"about {human_bytes(needed_bytes)} needed" if needed_bytes else "space needed unknown"
    return DiskFullError(
        f"{folder}: could not write {what}: {cause} ({needed}, {human_bytes(free)} free). Nothing partial was "
        f"left there and the previous files are unchanged. Fix: free space in {folder} (or raise the file-size "
        "limit), or point the setting for this folder (output.workspace_dir, output.output_path, data.cache_dir) "
        "at a disk with room, then run again.",
        folder,
        needed_bytes,
    )


def tensor_bytes(tensors) -> int:
    """Bytes the data of `tensors` (a dict of tensors) takes in a safetensors file, header not counted."""
    return sum(t.numel() * t.element_size() for t in tensors.values())
