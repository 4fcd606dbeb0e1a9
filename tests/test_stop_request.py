"""Ctrl-C as a user presses it: `scripts/train.py` gets SIGINT mid-run, finishes the step, writes a backup (backups
are off in its config), prints what it kept and the command that resumes, and exits 3 with no traceback; running
that command continues to weights bit-identical to an uninterrupted run. A second SIGINT while a backup is being
written stops at once (exit 130) and leaves every earlier backup complete and usable.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from modules.trainer.backups import backup_folders, check_backup, newest_usable_backup
from modules.trainer.stop_request import EXIT_ABORTED, EXIT_STOPPED
from modules.util.atomic import TEMP_FOLDER_PREFIX
from tests.test_backup_crash import reaped
from tests.test_resume import (
    EXACTNESS,
    REPO,
    TOTAL_STEPS,
    assert_bit_identical,
    final_state,
    run_training,
    train_command,
)


def last_step(events_file: Path) -> int:
    try:
        lines = events_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("}") and '"event": "step"' in line]
    return steps[-1] if steps else 0


def start_and_wait_for_step(command: list[str], events_file: Path, step: int) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while last_step(events_file) < step:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read()[-3000:])
        assert time.monotonic() < deadline, f"step {step} not reached within 300 s"
        time.sleep(0.02)
    return process


def test_sigint_backs_up_says_how_to_resume_and_the_resume_is_exact(demo_overrides, tmp_path):
    reference = tmp_path / "reference"
    run_training(demo_overrides(reference) + EXACTNESS + [f"training.max_steps={TOTAL_STEPS}"])

    interrupted = tmp_path / "interrupted"
    events = tmp_path / "events.jsonl"
    # No scheduled backups: the one the stop writes is the only one there is.
    overrides = demo_overrides(interrupted) + EXACTNESS + ["training.max_steps=1000", "backup.every_steps=0"]
    command = train_command(overrides) + ["--events-file", str(events)]
    process = start_and_wait_for_step(command, events, 3)
    with reaped(process):
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == EXIT_STOPPED, stderr[-3000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]

    folders = backup_folders(interrupted / "backups")
    assert len(folders) == 1, folders
    step = check_backup(folders[0])["global_step"]
    assert 3 <= step < TOTAL_STEPS
    assert f"Stopped at step {step} on SIGINT. Kept: backup {folders[0]}" in stderr, stderr[-3000:]
    stopped = json.loads(events.read_text(encoding="utf-8").splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["step"] == step and stopped["backup"] == str(folders[0])

    # The resume command exactly as printed (the user's command + continue_last_backup), made 12 steps long.
    lines = stderr.splitlines()
    printed = lines[lines.index("Resume exactly where it stopped with:") + 1].strip()
    resume = shlex.split(printed)
    assert resume[0] == "python" and resume[-2:] == ["--config-value", "backup.continue_last_backup=true"]
    resumed = subprocess.run(
        [sys.executable, *resume[1:], "--config-value", f"training.max_steps={TOTAL_STEPS}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step} " in resumed.stderr, resumed.stderr[-3000:]
    assert_bit_identical(final_state(reference), final_state(interrupted))


class NewFolderWatch:
    """Wakes the moment a folder is created in `root` (Linux inotify), so the test can freeze the writer there."""

    IN_CREATE, IN_ISDIR = 0x100, 0x40000000

    def __init__(self, root: Path):
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0 and self.libc.inotify_add_watch(self.fd, str(root).encode(), self.IN_CREATE) >= 0

    def wait(self, timeout: float) -> list[str]:
        import select
        import struct

        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data, names = os.read(self.fd, 65536), []
        while data:
            _wd, mask, _cookie, length = struct.unpack_from("iIII", data)
            if mask & self.IN_ISDIR:
                names.append(data[16 : 16 + length].rstrip(b"\0").decode())
            data = data[16 + length :]
        return names

    def close(self) -> None:
        os.close(self.fd)


def frozen(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_second_sigint_during_a_backup_write_stops_at_once_and_keeps_earlier_backups(demo_overrides, tmp_path):
    """The second SIGINT is made to land inside a backup write: the test sees the writer create its temp folder
    (inotify), freezes it with SIGSTOP while that folder is still unrenamed, sends SIGINT and lets it go on."""
    workspace = tmp_path / "run"
    root = workspace / "backups"
    events = tmp_path / "events.jsonl"
    overrides = demo_overrides(workspace) + ["training.max_steps=1000", "backup.every_steps=1"]
    for _attempt in range(4):
        events.unlink(missing_ok=True)
        process = start_and_wait_for_step(train_command(overrides) + ["--events-file", str(events)], events, 2)
        watch = NewFolderWatch(root)
        caught = None
        with reaped(process):
            # The writer at the lowest priority: on a loaded machine this test still wakes before its write ends.
            os.setpriority(os.PRIO_PROCESS, process.pid, 19)
            os.kill(process.pid, signal.SIGINT)  # first: stop after this step (whose backup is then written)
            deadline = time.monotonic() + 120
            while caught is None and process.poll() is None and time.monotonic() < deadline:
                for name in watch.wait(0.5):
                    if name.startswith(TEMP_FOLDER_PREFIX) and "-backup-" in name:
                        os.kill(process.pid, signal.SIGSTOP)
                        caught = root / name
                        break
            if caught is not None:
                while not frozen(process.pid):
                    time.sleep(0.001)
                inside = caught.is_dir()  # not yet renamed: the writer is frozen inside the write
                if inside:
                    os.kill(process.pid, signal.SIGINT)
                os.kill(process.pid, signal.SIGCONT)
            stdout, stderr = process.communicate(timeout=120)
        watch.close()
        print(f"attempt {_attempt}: caught {caught}, inside {caught is not None and inside}, exit {process.returncode}")
        assert "Traceback" not in stderr, stderr[-3000:]
        # Whatever the moment: every backup-* folder is complete and the newest one loads.
        for folder in backup_folders(root):
            check_backup(folder)
        assert newest_usable_backup(root) is not None
        if caught is not None and inside:
            assert process.returncode == EXIT_ABORTED, stderr[-3000:]
            assert "SIGINT again: stopping at once" in stderr
            assert caught.is_dir(), "the cut-short write should be left as an ignored temp folder"
            assert caught.name not in [f.name for f in backup_folders(root)]
            assert len(backup_folders(root)) >= 2  # the backups of the earlier steps are all still there
            return
        assert process.returncode == EXIT_STOPPED, stderr[-3000:]
    raise AssertionError("the writer was never frozen inside a backup write in 4 runs; the test proved nothing")
