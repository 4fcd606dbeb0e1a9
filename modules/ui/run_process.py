"""Training in a child process: the same `scripts/train.py` a user runs, so a crash there never takes the window
down. Its output lines and progress events are collected for the window; no Tk here. A reader thread only
puts lines on a queue, and the window drains it (and reads the events file) from its own main thread.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from modules.trainer.run_events import read_events

REPO = Path(__file__).resolve().parent.parent.parent
TRAIN_SCRIPT = REPO / "scripts" / "train.py"


class RunProcess:
    def __init__(self, config_path: Path, events_path: Path, extra_args: list[str] = ()):
        self.events_path = events_path
        events_path.unlink(missing_ok=True)
        self.command = [sys.executable, str(TRAIN_SCRIPT), "--config-path", str(config_path)]
        self.command += ["--events-file", str(events_path), *extra_args]
        self.lines: queue.Queue[str] = queue.Queue()
        self.offset = 0
        self.started = time.monotonic()
        # No tqdm bar in a pipe (the window has its own); unbuffered, so log lines arrive as they are written.
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _read_output(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.process.stdout.close()

    def new_lines(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self.lines.get_nowait())
            except queue.Empty:
                return lines

    def new_events(self) -> list[dict]:
        events, self.offset = read_events(self.events_path, self.offset)
        return events

    def finished(self) -> int | None:
        """The exit code once the process has ended and all its output was read; None while running."""
        if self.process.poll() is None or self.reader.is_alive():
            return None
        return self.process.returncode

    def stop(self) -> None:
        """Ask for a clean stop: the trainer finishes the step, writes a backup and exits (as on Ctrl-C)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
