"""A tool of the Tools tab as a child process: a script of scripts/, its output (stdout and stderr together) in
a log file (a file, not a pipe, as for training: run_process.py), read by the window from Tk's thread with
`after()`. The child runs in its own session; Stop sends SIGINT (the scripts end at once and cleanly on it,
keeping what they finished: whole clips, whole captions, cache entries), a second Stop kills it. A tool still
running when the window's process exits gets the SIGINT too, so it never outlives the window silently.
No Tk here.
"""

from __future__ import annotations

import atexit
import codecs
import os
import signal
import subprocess
from pathlib import Path

from modules.ui.run_process import REPO


class ToolProcess:
    def __init__(self, command: list[str], log_path: Path):
        self.command, self.log_path = command, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # tqdm bars stay on (the tab reads them: tool_progress.py); unbuffered, so lines arrive as written.
        env = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as output:
            self.popen = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.offset = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.stops_sent = 0
        atexit.register(self._stop_if_running)

    def new_output(self) -> str:
        """What the tool wrote since the last call (tqdm's carriage returns kept)."""
        try:
            with open(self.log_path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return ""
        self.offset += len(data)
        return self.decoder.decode(data)  # a character written in two pieces is held back until it is whole

    def finished(self) -> int | None:
        return self.popen.poll()

    def stop(self) -> None:
        """First call: SIGINT (as Ctrl-C); second: SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.stops_sent += 1
        self.popen.send_signal(signal.SIGINT if self.stops_sent == 1 else signal.SIGKILL)

    def _stop_if_running(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
