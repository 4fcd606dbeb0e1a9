"""Helpers for the reliability tests: the three scripts run as a user runs them, and snapshots of what a run
left on disk (so a test can assert that a failing run changed none of it)."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_PRESET = REPO / "training_presets" / "demo_ti2v_5b_lora.json"


def run_script(
    script: str, *args: str, file_size_limit: int | None = None, env: dict | None = None, wrap: list[str] = ()
) -> subprocess.CompletedProcess:
    """`python scripts/<script> args...`; `file_size_limit` (bytes) makes writes past it fail with EFBIG,
    as on a full disk (SIGXFSZ ignored so the write returns an error instead of killing the process)."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [*wrap, sys.executable, str(REPO / "scripts" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        preexec_fn=limit_file_size if file_size_limit else None,
    )


def train(*config_values: str, **kwargs) -> subprocess.CompletedProcess:
    args = ["--config-path", str(DEMO_PRESET)]
    for value in config_values:
        args += ["--config-value", value]
    return run_script("train.py", *args, **kwargs)


def error_lines(done: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in done.stderr.splitlines() if line.startswith("error:") or "Fix" in line)


def assert_known_error(done: subprocess.CompletedProcess, *names: str) -> str:
    """Exit code 2, one `error:` message that names each of `names` and says the fix, and no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    message = done.stderr[done.stderr.index("error:") :]
    for name in names:
        assert name in message, f"{name!r} not in: {message}"
    assert "Fix" in message, message
    return message


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (the lock file excluded: it is the run's, not its results)."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and path.name != "run.lock":
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# ---- a run interrupted as a user interrupts it ----------------------------------------------------------------
def train_arguments(*config_values: str, extra: tuple[str, ...] = ()) -> list[str]:
    args = [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(DEMO_PRESET)]
    for value in config_values:
        args += ["--config-value", value]
    return [*args, *extra]


class RunningTrainer:
    """scripts/train.py started in the background, its output in files (a pipe nobody reads could fill and block it)."""

    def __init__(self, command: list[str], folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def wait_until(self, condition, timeout: float = 300, interval: float = 0.002) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"ended (exit {self.process.returncode}) first:\n{self.output()[-3000:]}")
            assert time.monotonic() < deadline, f"not reached within {timeout} s:\n{self.output()[-3000:]}"
            time.sleep(interval)

    def interrupt(self, timeout: float = 300) -> float:
        """SIGINT (Ctrl-C); wait for the exit and return the seconds from the signal to it."""
        sent = time.monotonic()
        os.kill(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=timeout)
        return time.monotonic() - sent

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def assert_clean_stop(trainer: RunningTrainer, phase: str) -> str:
    """Exit 3, no traceback, and the stop message names the phase cut short."""
    output = trainer.output()
    assert trainer.process.returncode == 3, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert phase in output, f"{phase!r} not in:\n{output[-3000:]}"
    return output


def terminal_lines(text: str) -> list[str]:
    """What a terminal shows, one entry per line, without progress-bar redraws (tqdm: 'label:  40%|...')."""
    lines = []
    for raw in text.replace("\r", "\n").splitlines():
        line = raw.rstrip()
        if line.strip() and not re.match(r"^\s*[\w ]+: +\d+%\|", line):
            lines.append(line)
    return lines


# Freezes a process (SIGSTOP) the moment a file or folder whose name starts with a prefix is created in a folder:
# inotify wakes this small watcher at once, at real-time priority where the system allows it, so it wins the race
# against a write that takes milliseconds on a busy machine. It prints "watching" when ready and the caught name when
# done. It acts only once armed: when the pid file exists (written whole, by a rename), that pid is frozen.
FREEZER = """
import ctypes, os, signal, struct, sys
folder, prefix, pid_file = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
except (OSError, AttributeError):
    pass
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
assert fd >= 0 and libc.inotify_add_watch(fd, folder.encode(), 0x100) >= 0  # IN_CREATE
print("watching", flush=True)
while True:
    data = os.read(fd, 65536)
    while data:
        _wd, _mask, _cookie, length = struct.unpack_from("iIII", data)
        name = data[16 : 16 + length].rstrip(b"\\0").decode()
        data = data[16 + length :]
        if name.startswith(prefix) and os.path.exists(pid_file):
            os.kill(int(open(pid_file).read()), signal.SIGSTOP)
            print(name, flush=True)
            sys.exit(0)
"""


def start_freezer(folder: Path, prefix: str, pid_file: Path) -> subprocess.Popen:
    """The FREEZER watching `folder`, once it says it is watching (so no creation after this call is missed)."""
    freezer = subprocess.Popen(
        [sys.executable, "-c", FREEZER, str(folder), prefix, str(pid_file)], stdout=subprocess.PIPE, text=True
    )
    assert freezer.stdout.readline() == "watching\n"
    return freezer
