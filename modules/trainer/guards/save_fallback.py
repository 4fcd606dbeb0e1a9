"""A save that fails must not lose the trained weights: write them somewhere else and say where.

The output folder is checked before the model loads (modules/trainer/guards/preflight.py), but a disk can fill up,
a mount can turn read-only or permissions can change during a long run. When the save fails anyway, the
weights go, in this order, to:

1. `<workspace>/fallback-save/<file name>`: the same files the save would have written;
2. a backup in `<workspace>/backups` (resumable with backup.continue_last_backup);
3. `<system temp folder>/wan-trainer-fallback-<pid>/<file name>`, in case the workspace's disk is the one
   that is full.

The first that works is named in the SaveFailedError, with the original error and the fix.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from modules.trainer.state.backups import backup_folders
from modules.trainer.state.ema import ema_weights_in_use
from modules.util.errors import UserError

log = logging.getLogger("wan_trainer")
FALLBACK_FOLDER = "fallback-save"


class SaveFailedError(UserError, RuntimeError):
    """A save failed; the message says why, where the weights were kept instead, and what to do."""


def save_or_keep(trainer, destination: Path) -> list[Path]:
    """trainer.save(destination); if it fails, keep the weights elsewhere and raise SaveFailedError."""
    try:
        return trainer.save(destination)
    except Exception as error:  # any failure: the weights matter more than the kind of error
        reason = f"{type(error).__name__}: {error}"
        log.error("saving %s failed (%s); keeping the trained weights elsewhere", destination, reason)
        kept = _keep_weights(trainer, destination)
        step = trainer.progress.global_step
        if kept:
            where = "\n  ".join(str(p) for p in kept)
            raise SaveFailedError(
                f"{destination}: the save at step {step} failed ({reason}).\nThe trained weights were kept "
                f"instead in:\n  {where}\nFix: make {destination.parent} writable (or free space there), then move "
                "these files to where you want them; a backup folder resumes with backup.continue_last_backup=true."
            ) from None
        raise SaveFailedError(
            f"{destination}: the save at step {step} failed ({reason}), and so did every fallback (the workspace's "
            f"{FALLBACK_FOLDER}/ and backups/ folders, and the temp folder). The weights of this run are lost; "
            "backups written earlier in <workspace>/backups are unchanged. Fix: make the output and workspace "
            "folders writable and free space, then resume from the last backup."
        ) from None


def _keep_weights(trainer, destination: Path) -> list[Path]:
    workspace = Path(trainer.config.output.workspace_dir)
    attempts = [
        lambda: _save_to(trainer, workspace / FALLBACK_FOLDER / destination.name),
        lambda: _backup(trainer),
        lambda: _save_to(
            trainer, Path(tempfile.gettempdir()) / f"wan-trainer-fallback-{os.getpid()}" / destination.name
        ),
    ]
    for attempt in attempts:
        try:
            kept = attempt()
        except Exception as error:
            log.error("fallback failed too: %s: %s", type(error).__name__, error)
            continue
        if kept:
            return kept
    return []


def _save_to(trainer, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with ema_weights_in_use(trainer.ema):
        return trainer.plugin.saver().save(trainer.model, trainer.config, path)


def _backup(trainer) -> list[Path]:
    folder = trainer.backups.write("the save failed")
    if folder is None:  # this exact step is already backed up
        folders = backup_folders(trainer.backups.root)
        return folders[:1]
    return [folder]
