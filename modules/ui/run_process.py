"""Training in a child process: the same `scripts/train.py` a user runs, so a crash there never takes the window
down. No Tk here.

The child writes its output to `<workspace>/ui/train.log` (not a pipe: a pipe would break when the window
closes, killing the run with "Broken pipe") and its progress to `<workspace>/ui/events.jsonl`; the window reads
both files from its own main thread. The child runs in its own session, so a terminal's Ctrl-C or hang-up reaches
the window, which decides (docs/ui.md "Closing during a run"), never the child directly.

A window opened on a workspace whose run is still going attaches to it (`RunProcess.attach`): the PID comes
from the workspace lock (modules/trainer/guards/workspace_lock.py) or, while the child is still loading and has not
taken the lock yet, from `<workspace>/ui/run.json` written here at start.

Unless `detach()` was called, a run started here is asked to stop (with a backup) when this Python process exits,
so the child never outlives the window silently.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from modules.trainer.guards.stop_request import EXIT_ABORTED, EXIT_STOPPED
from modules.trainer.reporting.run_events import read_events

REPO = Path(__file__).resolve().parent.parent.parent
TRAIN_SCRIPT = REPO / "scripts" / "train.py"
UI_FOLDER = "ui"
LOCK_FILE = (
    "run.lock"  # modules/trainer/guards/workspace_lock.py's LOCK_FILE (that module imports torch, via util.atomic)
)
EXIT_UNKNOWN = -9  # an attached run that ended with no closing event: it was killed


def run_files(workspace: Path) -> tuple[Path, Path, Path]:
    """(events, log, run record) of the window's run in `workspace`."""
    folder = workspace / UI_FOLDER
    return folder / "events.jsonl", folder / "train.log", folder / "run.json"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, someone else's
    return True


def _is_trainer(pid: int) -> bool:
    """The PID is alive and (where /proc tells) runs scripts/train.py, not an unrelated process that reused it."""
    if not isinstance(pid, int) or not _process_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"train.py" in cmdline.read_bytes()
    except OSError:
        return not cmdline.parent.parent.exists()  # no /proc on this system: alive is all we can know


class RunProcess:
    def __init__(self, workspace: Path, pid: int, popen: subprocess.Popen | None, command: list[str]):
        self.workspace = workspace
        self.events_path, self.log_path, self.record_path = run_files(workspace)
        self.pid, self.popen, self.command = pid, popen, command
        self.offset = self.log_offset = 0
        self.partial = b""
        self.detached = False
        self.stops_sent = 0
        self.closing_events: list[str] = []
        self.started = time.monotonic()
        atexit.register(self._stop_unless_detached)

    # ---- starting and attaching ---------------------------------------------------------------------
    @classmethod
    def start(cls, workspace: Path, config_path: Path, extra_args: list[str] = ()) -> RunProcess:
        events, log, record = run_files(workspace)
        log.parent.mkdir(parents=True, exist_ok=True)
        events.unlink(missing_ok=True)
        command = [sys.executable, str(TRAIN_SCRIPT), "--config-path", str(config_path)]
        command += ["--events-file", str(events), *extra_args]
        # No tqdm bar in a file (the window has its own); unbuffered, so log lines arrive as they are written.
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as output:
            popen = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        record.write_text(json.dumps({"pid": popen.pid, "command": command}), encoding="utf-8")
        return cls(workspace, popen.pid, popen, command)

    @classmethod
    def attach(cls, workspace: Path) -> RunProcess | None:
        """The run going on in `workspace` (started by an earlier window or the CLI), or None."""
        events, _, record = run_files(workspace)
        for source in (workspace / LOCK_FILE, record):
            try:
                owner = json.loads(source.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            pid = owner.get("pid") if isinstance(owner, dict) else None
            if pid != os.getpid() and _is_trainer(pid):
                run = cls(workspace, pid, None, owner.get("command") or [f"(PID {pid})"])
                run.detached = True  # not ours to stop on exit: it was running without this window
                return run
        return None

    # ---- following ----------------------------------------------------------------------------------
    def new_lines(self) -> list[str]:
        try:
            with open(self.log_path, "rb") as file:
                file.seek(self.log_offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self.log_offset += len(data)
        data = self.partial + data
        end = data.rfind(b"\n") + 1
        self.partial = data[end:]
        return data[:end].decode("utf-8", "replace").splitlines()

    def new_events(self) -> list[dict]:
        events, self.offset = read_events(self.events_path, self.offset)
        self.closing_events += [e["event"] for e in events if e["event"] in ("done", "stopped", "error")]
        return events

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _is_trainer(self.pid)

    def finished(self) -> int | None:
        """The exit code once the process has ended; None while running. An attached run's code is read from
        its last event (done 0, stopped 3, error 1, none: killed)."""
        if self.alive():
            return None
        if self.popen is not None:
            return self.popen.returncode
        self.new_events()
        last = self.closing_events[-1] if self.closing_events else None
        return {"done": 0, "stopped": EXIT_STOPPED, "error": 1}.get(last, EXIT_UNKNOWN)

    # ---- commands -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """First call: a clean stop (the trainer finishes the step, writes a backup and exits, as on Ctrl-C).
        Second call: the trainer ends at once with EXIT_ABORTED, keeping earlier backups."""
        if self.alive():
            self.stops_sent += 1
            os.kill(self.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            if self.popen is not None:
                self.popen.wait()

    def detach(self) -> None:
        """Leave the run going after this window closes."""
        self.detached = True

    def _stop_unless_detached(self) -> None:
        if not self.detached and self.stops_sent == 0 and self.alive():
            self.stop()


__all__ = ["RunProcess", "REPO", "EXIT_STOPPED", "EXIT_ABORTED"]
