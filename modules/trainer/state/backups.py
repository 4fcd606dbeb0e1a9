"""Backup folders on disk: written atomically, found newest-first, checked before use, pruned to a rolling count.

A backup is a folder `<root>/backup-<YYYYmmdd-HHMMSS>-step<N>` holding safetensors files (tensors), a
`state.json` (everything else) and, written last, the marker `backup_complete.json` that lists every file
with its size. The folder is written under a temp name (modules/util/atomic.py `atomic_folder`) and
renamed only after every file is fsynced, so a crash at any moment leaves either a complete backup or a
`.tmp-*` folder that readers ignore. What goes into a backup is decided in modules/trainer/state/resume.py.

Nothing lost to a rerun: a run deletes only backups it wrote itself (`prune_own_backups`, the rolling count counts
this run's backups), never those of an earlier run in the same workspace, not even of the run it resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modules.util.atomic import TEMP_FOLDER_PREFIX, atomic_folder, stale_temp_folders
from modules.util.disk_space import tensor_bytes
from modules.util.errors import UserError

log = logging.getLogger("wan_trainer.backups")

BACKUP_FORMAT = 1
BACKUP_PREFIX = "backup-"
MARKER_FILE = "backup_complete.json"
STATE_FILE = "state.json"


class BackupError(UserError, RuntimeError):
    """A backup folder that cannot be used; the message names the folder and the reason."""


@dataclass
class BackupContents:
    state: dict  # JSON-able: progress, optimizer/scheduler structure, RNG numbers, ...
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # file stem -> tensors


def write_backup(root: Path, contents: BackupContents, global_step: int) -> Path:
    """Write `contents` as a new complete backup folder in `root` and return its path."""
    root = Path(root)
    name = f"{BACKUP_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-step{global_step:08d}"
    destination, counter = root / name, 1
    while destination.exists():  # two backups in one second (e.g. before a save and on schedule)
        destination, counter = root / f"{name}-{counter}", counter + 1
    needed = sum(tensor_bytes(tensors) for tensors in contents.tensors.values())
    with atomic_folder(destination, needed) as tmp:
        for stem, tensors in contents.tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / f"{stem}.safetensors"))
        (tmp / STATE_FILE).write_text(json.dumps(contents.state, allow_nan=True), encoding="utf-8")
        sizes = {}
        for file in sorted(tmp.iterdir()):
            os.chmod(file, 0o644)  # safetensors creates files private; backups are ordinary files
            _fsync(file)  # the data is on disk before the marker that vouches for it
            sizes[file.name] = file.stat().st_size
        marker = {"format": BACKUP_FORMAT, "global_step": global_step, "files": sizes}
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return destination


def backup_folders(root: Path) -> list[Path]:
    """Every folder that claims to be a backup, newest first (names sort by time); temp folders excluded."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(BACKUP_PREFIX)]
    return sorted(folders, key=lambda p: p.name, reverse=True)


def check_backup(folder: Path) -> dict:
    """The marker of a complete backup; raises BackupError naming what is missing or truncated."""
    marker_path = folder / MARKER_FILE
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{folder}: incomplete (no {MARKER_FILE}; the run probably stopped while writing it)"
        ) from None
    except (OSError, ValueError) as error:
        raise BackupError(f"{marker_path}: unreadable marker ({error})") from None
    if (
        not isinstance(marker, dict)
        or marker.get("format") != BACKUP_FORMAT
        or not isinstance(marker.get("files"), dict)
    ):
        raise BackupError(f"{marker_path}: not a backup marker of format {BACKUP_FORMAT}")
    for name, size in marker["files"].items():
        path = folder / name
        if not path.is_file():
            raise BackupError(f"{path}: listed in {MARKER_FILE} but missing")
        if path.stat().st_size != size:
            raise BackupError(f"{path}: {path.stat().st_size} bytes, but {size} were written (truncated or altered)")
    return marker


def read_backup(folder: Path) -> BackupContents:
    """Check and load a backup into CPU memory; raises BackupError if any part is missing or unreadable."""
    marker = check_backup(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BackupError(f"{folder / STATE_FILE}: unreadable ({error})") from None
    tensors = {}
    for name in marker["files"]:
        if name.endswith(".safetensors"):
            try:
                tensors[name.removesuffix(".safetensors")] = load_file(str(folder / name))
            except (SafetensorError, OSError, ValueError) as error:
                raise BackupError(f"{folder / name}: not a readable safetensors file ({error})") from None
    return BackupContents(state=state, tensors=tensors)


def newest_usable_backup(root: Path, check=None) -> tuple[Path, BackupContents] | None:
    """The newest backup that reads completely and passes `check(contents, folder)` (which raises BackupError
    to refuse it); bad or partial backups are skipped with a warning naming the reason. None when `root`
    holds no backup at all; BackupError listing every reason when none is usable."""
    folders = backup_folders(root)
    if not folders:
        return None
    problems = []
    for folder in folders:
        try:
            contents = read_backup(folder)
            if check is not None:
                check(contents, folder)
        except BackupError as error:
            log.warning("skipping backup: %s; falling back to an older one", error)
            problems.append(str(error))
            continue
        return folder, contents
    raise BackupError(f"none of the {len(folders)} backups in {root} can be used:\n  " + "\n  ".join(problems))


def read_state(folder: Path) -> dict:
    """The state.json of a complete backup (no tensors read); BackupError when incomplete or unreadable."""
    check_backup(folder)
    try:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BackupError(f"{folder / STATE_FILE}: unreadable ({error})") from None


def newest_complete_backup(root: Path) -> Path | None:
    return next((folder for folder in backup_folders(root) if _is_complete(folder)), None)


def prune_own_backups(written: list[Path], keep: int) -> list[Path]:
    """Delete all but the newest `keep` of `written`, the backups this run wrote (oldest first), and return what
    was deleted; `written` is updated. Backups of other runs are never candidates; neither are incomplete ones,
    which are left for a person to inspect."""
    complete = [folder for folder in written if folder.is_dir() and _is_complete(folder)]
    removed = []
    for folder in complete[: max(0, len(complete) - keep)]:
        # Rename first: a deletion cut short then leaves a temp folder, never a backup with missing files.
        doomed = folder.with_name(f"{TEMP_FOLDER_PREFIX}{os.getpid()}-trash-{folder.name}")
        os.rename(folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(folder)
        written.remove(folder)
    return removed


def remove_stale_temp_folders(root: Path) -> None:
    """Temp folders of writers that died (a killed run) are never complete; they only take space."""
    if Path(root).is_dir():
        for folder in stale_temp_folders(root):
            log.info("removing %s, left by a run that stopped while writing it", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _is_complete(folder: Path) -> bool:
    try:
        check_backup(folder)
    except BackupError:
        return False
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())
