"""Requests a watcher (the GUI) makes of a running trainer: sample now, back up now, save now.

A request is a small file `<workspace>/run_requests/<kind>-<time>.json`, written atomically by `request()`. The
loop calls `take_requests(trainer, run_log)` at each step boundary, just before it looks at a stop request
(modules/trainer/guards/stop_request.py): one directory listing per step, and the request is done there, where the
gradient accumulation and data position are whole, exactly like a stop. Each request file is removed once taken,
so a request is done once; a request for a run that has ended is cleared when the next run starts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

REQUESTS_DIR = "run_requests"
KINDS = ("sample", "backup", "save")


def request(workspace: str | Path, kind: str) -> Path:
    """Ask the run in `workspace` to do `kind` at its next step boundary; returns the request file."""
    if kind not in KINDS:
        raise ValueError(f"unknown run request {kind!r}; known: {', '.join(KINDS)}")
    folder = Path(workspace) / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{time.time_ns()}.json"
    # Written under a name the trainer ignores, then renamed: it never reads half a request. (Not through
    # modules/util/atomic.py, which imports torch: the window calls this and must not wait for torch.)
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(json.dumps({"kind": kind, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def pending(workspace: str | Path) -> list[str]:
    """The kinds asked for and not yet taken, oldest first; the files are removed (each is done once)."""
    folder = Path(workspace) / REQUESTS_DIR
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".json"))
    except FileNotFoundError:
        return []
    kinds = []
    for name in names:
        kind = name.split("-", 1)[0]
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            continue  # taken meanwhile
        if kind in KINDS and kind not in kinds:
            kinds.append(kind)
    return kinds


def clear(workspace: str | Path) -> None:
    """Forget requests left by an earlier run (asked for after it ended)."""
    pending(workspace)


def take_requests(trainer, run_log) -> None:
    """Do what was asked since the last step (main process decides, so several processes act together)."""
    kinds = pending(trainer.workspace) if trainer.distributed.is_main else []
    step = trainer.progress.global_step
    for kind in KINDS:
        if not trainer.distributed.main_decides(kind in kinds):
            continue
        if kind == "sample":
            run_log.message(f"step {step}: sampling now, as requested")
            trainer.sample_all(f"request-step{step:06d}", run_log)
        elif kind == "backup":
            backup = trainer.backups.write("requested")
            run_log.message(f"step {step}: backup {backup or 'of this step exists already'}, as requested")
        elif kind == "save":
            from modules.trainer.guards.save_fallback import save_or_keep

            stem = trainer.output_path().stem
            files = save_or_keep(trainer, trainer.workspace / "save" / f"{stem}-step{step:06d}.safetensors")
            run_log.message(f"step {step}: saved {', '.join(map(str, files))}, as requested")
