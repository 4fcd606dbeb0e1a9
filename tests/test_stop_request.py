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


def test_second_sigint_during_a_backup_write_stops_at_once_and_keeps_earlier_backups(demo_overrides, tmp_path):
    workspace = tmp_path / "run"
    events = tmp_path / "events.jsonl"
    # Backups every step with a larger LoRA (bigger files): a write is in progress a good part of the time.
    overrides = demo_overrides(workspace) + ["training.max_steps=1000", "backup.every_steps=1", "lora.rank=64"]
    landed_in_write = False
    for _attempt in range(5):
        events.unlink(missing_ok=True)
        process = start_and_wait_for_step(train_command(overrides) + ["--events-file", str(events)], events, 2)
        root = workspace / "backups"
        with reaped(process):
            os.kill(process.pid, signal.SIGINT)
            deadline = time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline:
                if any(p.name.startswith(TEMP_FOLDER_PREFIX) for p in root.iterdir()):
                    os.kill(process.pid, signal.SIGINT)
                    break
            stdout, stderr = process.communicate(timeout=120)
        assert "Traceback" not in stderr, stderr[-3000:]
        assert process.returncode in (EXIT_ABORTED, EXIT_STOPPED), stderr[-3000:]
        # Whatever the moment: every backup-* folder is complete, the newest one loads.
        for folder in backup_folders(root):
            check_backup(folder)
        assert newest_usable_backup(root) is not None
        if process.returncode == EXIT_ABORTED:
            assert "again: stopping at once" in stderr
            landed_in_write = any(p.name.startswith(TEMP_FOLDER_PREFIX) for p in root.iterdir())
            if landed_in_write:
                break
    assert landed_in_write, "the second SIGINT never landed inside a backup write; the test proved nothing"
