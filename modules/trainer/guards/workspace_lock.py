"""One run per workspace: two runs writing the same backups, saves and cache would undo each other's work.

The lock is `<workspace>/run.lock`, a small JSON file with the owner's PID, host and start time, created with
O_EXCL so exactly one of two runs starting together gets it. A lock whose process is gone (a killed run, a
reboot) is stale: the next run takes it over and says so. The lock is removed when the run ends.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path

from modules.util.atomic import process_alive
from modules.util.errors import UserError

log = logging.getLogger("wan_trainer")
LOCK_FILE = "run.lock"


class WorkspaceLockError(UserError, RuntimeError):
    """Another run is using the workspace; the message names its PID and start time and the fix."""


class WorkspaceLock:
    def __init__(self, workspace: str | Path):
        self.path = Path(workspace) / LOCK_FILE
        self.held = False

    def acquire(self) -> WorkspaceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        # Written in full under a private name, then hard-linked into place: the link fails if a lock exists,
        # and a lock that exists is always complete (never a half-written file another run would misread).
        tmp = self.path.with_name(f".{LOCK_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(mine), encoding="utf-8")
        try:
            for _ in range(3):  # a lock removed or taken over between our attempts: look again
                try:
                    _link_or_create(tmp, self.path)
                except FileExistsError:
                    self._refuse_or_clear()
                    continue
                self.held = True
                atexit.register(self.release)  # a run that ends without release() (a stop, an error) frees it too
                return self
        finally:
            tmp.unlink(missing_ok=True)
        raise WorkspaceLockError(f"{self.path}: could not take the workspace lock (another run keeps replacing it)")

    def _refuse_or_clear(self) -> None:
        other = self._read()
        if other is None:
            return  # removed meanwhile
        if self._alive(other):
            raise WorkspaceLockError(
                f"{self.path.parent}: the workspace is in use by another run (PID {other.get('pid')} on "
                f"{other.get('host')}, started {other.get('started')}). Fix: wait for that run to end or stop it, "
                f"or set output.workspace_dir to another folder. If no such run exists, delete {self.path}."
            )
        log.warning(
            "%s: taking over the lock of a run that is no longer running (PID %s, started %s)",
            self.path.parent,
            other.get("pid"),
            other.get("started"),
        )
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            owner = self._read()
            if owner is not None and owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> WorkspaceLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Unreadable (the lock is always written complete, so damaged by something else): stale.
            return {"pid": None, "host": socket.gethostname(), "started": "unknown"}
        return data if isinstance(data, dict) else {"pid": None, "host": None, "started": "unknown"}

    @staticmethod
    def _alive(owner: dict) -> bool:
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return False
        if owner.get("host") != socket.gethostname():
            return True  # a run on another machine sharing this folder: cannot check its PID, so respect it
        if pid == os.getpid():
            return False  # our own lock left by an earlier run in this process (e.g. the GUI): not a competitor
        return process_alive(pid)


def _link_or_create(source: Path, lock: Path) -> None:
    """Put `source`'s content at `lock`, failing with FileExistsError when `lock` exists."""
    try:
        os.link(source, lock)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: exclusive create, then write (tiny window)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(source.read_text(encoding="utf-8"))
