"""Atomic file writes: a reader (or a crash) sees either the old file or the complete new one, never half a file.

Every file the trainer writes (configs, LoRAs, samples, checkpoints) goes through here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable

import torch
from safetensors.torch import save_file

from modules.util.disk_space import disk_full_error, is_out_of_space, tensor_bytes


@contextmanager
def atomic_path(path: str | Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is fsynced and renamed over `path`, on failure removed.

    The temp file is in the same folder so os.replace is a rename within one file system (atomic), and a
    failure leaves the old `path`, if any, untouched. For writers that want a file name, not a file object.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); the result gets the old file's mode, or the usual 0644. Set after
    # the writer, because some writers (safetensors' save_file) replace the temp file with their own 0600 file.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    try:
        yield tmp
        os.chmod(tmp, mode)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        # BaseException too: a Ctrl-C mid-write must not leave a stray temp file.
        tmp.unlink(missing_ok=True)
        if is_out_of_space(error):
            raise disk_full_error(error, path.parent, needed_bytes, path.name) from error
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, write_fn: Callable[[BinaryIO], object]) -> Path:
    """Call `write_fn(file)` on a binary temp file beside `path`, then atomically rename it over `path`."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        write_fn(file)
    return path


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write a .safetensors file atomically. Metadata values must be strings (the format's rule)."""
    if metadata is not None:
        bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise TypeError(f"safetensors metadata must map str to str; these entries are not: {bad}")
    # safetensors needs contiguous tensors that own their storage layout; views of bigger tensors are copied.
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    path = Path(path)
    with atomic_path(path, tensor_bytes(tensors)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


# Name prefix of folders being written by `atomic_folder`; readers must ignore such folders.
TEMP_FOLDER_PREFIX = ".tmp-"


@contextmanager
def atomic_folder(path: str | Path, needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield an empty temp folder beside `path`; on success every file in it is fsynced and the folder is
    renamed to `path` (which must not exist), on failure it is removed.

    The temp name starts with TEMP_FOLDER_PREFIX and holds the writer's pid, so a folder left by a killed
    process is recognisable as incomplete and can be removed once that pid is gone (`stale_temp_folders`).
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists; atomic_folder never replaces a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_FOLDER_PREFIX}{os.getpid()}-{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync_file(file)
        for folder in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
            _fsync_dir(folder)
        _fsync_dir(tmp)
        os.rename(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_out_of_space(error):
            raise disk_full_error(error, path.parent, needed_bytes, f"{path.name}/") from error
        raise
    _fsync_dir(path.parent)


def stale_temp_folders(parent: str | Path) -> list[Path]:
    """Temp folders of `atomic_folder` in `parent` whose writing process no longer runs."""
    stale = []
    for folder in Path(parent).glob(f"{TEMP_FOLDER_PREFIX}*"):
        pid_text = folder.name[len(TEMP_FOLDER_PREFIX) :].split("-", 1)[0]
        if folder.is_dir() and not (pid_text.isdigit() and process_alive(int(pid_text))):
            stale.append(folder)
    return stale


def process_alive(pid: int) -> bool:
    """Whether process `pid` may still run: stale temp folders here and stale workspace locks are judged by it."""
    if pid == os.getpid() or os.name == "nt":
        # On Windows os.kill(pid, 0) would send CTRL_C_EVENT, not probe: keep the folder there.
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: keep its folder
    return True
