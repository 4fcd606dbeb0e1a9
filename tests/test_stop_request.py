"""Ctrl-C as a user presses it: `scripts/train.py` gets SIGINT mid-run, finishes the step, writes a backup (backups
are off in its config), prints what it kept and the command that resumes, and exits 3 with no traceback; running
that command continues to weights bit-identical to an uninterrupted run. A second SIGINT while a backup is being
written stops at once (exit 130) and leaves every earlier backup complete and usable.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from modules.trainer.guards.stop_request import EXIT_ABORTED, EXIT_STOPPED
from modules.trainer.state.backups import backup_folders, check_backup, newest_usable_backup
from modules.util.atomic import TEMP_FOLDER_PREFIX
from tests.reliability_cli import start_freezer
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
    # The interpreter that ran it (a bare `python` may be another one, without the packages).
    assert resume[0] == sys.executable and resume[-2:] == ["--config-value", "backup.continue_last_backup=true"]
    resumed = subprocess.run(
        [*resume, "--config-value", f"training.max_steps={TOTAL_STEPS}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step} " in resumed.stderr, resumed.stderr[-3000:]
    assert_bit_identical(final_state(reference), final_state(interrupted))


def freezer_report_or_exit(freezer: subprocess.Popen, trainer: subprocess.Popen, timeout: float = 300) -> str | None:
    """The temp folder the freezer caught, or None when the trainer ended first without a backup write to catch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([freezer.stdout], [], [], 0.05)
        if ready:
            return freezer.stdout.readline().strip()
        if trainer.poll() is not None:
            return None
    raise AssertionError(f"neither a backup write nor the end of the trainer within {timeout} s")


def frozen(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_second_sigint_during_a_backup_write_stops_at_once_and_keeps_earlier_backups(demo_overrides, tmp_path):
    """The second SIGINT lands inside the backup write of the stop the first one asked for: a watcher freezes the
    trainer (SIGSTOP) as it creates the backup's temp folder; while that folder is still unrenamed, the test
    sends SIGINT and lets the trainer go on (SIGCONT)."""
    events = tmp_path / "events.jsonl"
    for attempt in range(3):
        workspace = tmp_path / f"run-{attempt}"  # each attempt on its own: no backups of an earlier one around
        root = workspace / "backups"
        root.mkdir(parents=True)
        # A backup at step 5; the stop comes at step 6 or 7, so its backup is the only write after the first SIGINT.
        overrides = demo_overrides(workspace) + ["training.max_steps=1000", "backup.every_steps=5"]
        events.unlink(missing_ok=True)
        arm_file = tmp_path / f"arm-{attempt}"
        # Watches the backups folder from before the run starts (a fast machine trains 20 steps a second: a watcher
        # started later can miss the write); armed after the step-5 backup, it freezes the next backup write.
        freezer = start_freezer(root, TEMP_FOLDER_PREFIX, arm_file)
        with reaped(freezer):
            process = start_and_wait_for_step(train_command(overrides) + ["--events-file", str(events)], events, 6)
            with reaped(process):
                (tmp_path / "arm.tmp").write_text(str(process.pid))
                (tmp_path / "arm.tmp").rename(arm_file)  # armed after the step-5 backup, never during it
                os.kill(process.pid, signal.SIGINT)  # first: stop after this step and write a backup
                name = freezer_report_or_exit(freezer, process)
                caught = root / name if name else None
                if caught is not None:
                    while not frozen(process.pid):
                        time.sleep(0.001)
                    assert caught.name.startswith(TEMP_FOLDER_PREFIX)
                inside = caught is not None and caught.is_dir()  # not yet renamed: frozen inside the write
                if inside:
                    os.kill(process.pid, signal.SIGINT)
                if caught is not None:
                    os.kill(process.pid, signal.SIGCONT)
                stdout, stderr = process.communicate(timeout=120)
        print(f"attempt {attempt}: caught {caught and caught.name}, inside {inside}, exit {process.returncode}")
        assert "Traceback" not in stderr, stderr[-3000:]
        # Whatever the moment: every backup-* folder is complete and the newest one loads.
        for folder in backup_folders(root):
            check_backup(folder)
        assert newest_usable_backup(root) is not None
        if inside:
            assert process.returncode == EXIT_ABORTED, stderr[-3000:]
            assert "SIGINT again: stopping at once" in stderr
            assert caught.is_dir(), "the write cut short is left as a temp folder, which readers ignore"
            assert [check_backup(f)["global_step"] for f in backup_folders(root)] == [5]  # the earlier one, intact
            return
        assert process.returncode == EXIT_STOPPED, stderr[-3000:]
    raise AssertionError("the writer was never frozen inside its backup write in 3 runs; the test proved nothing")


def test_a_stop_request_belongs_to_one_run_and_its_handlers_are_restored(demo_overrides, tmp_path):
    """A SIGTERM during one in-process run stops that run's phases only: the handlers found before are back when it
    ends, and a later run in the same process has a request of its own and trains to its end."""
    from modules.config.loading import load_config
    from modules.trainer.generic_trainer import GenericTrainer
    from modules.trainer.guards.stop_request import STOP_SIGNALS, stop_signals
    from modules.util.stop_point import StopRequested, stop_point

    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    config = load_config(REPO / "training_presets" / "demo_ti2v_5b_lora.json", demo_overrides(tmp_path / "first"))
    with stop_signals() as first:
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread before the next line runs
        assert first.signal_name == "SIGTERM"
        assert GenericTrainer(config).stop is first  # the trainer made in this run takes this run's request
        try:
            stop_point("caching latents")
            raise AssertionError("the stop point did not stop")
        except StopRequested as stopped:
            assert (stopped.phase, stopped.signal_name) == ("caching latents", "SIGTERM")
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == before
    stop_point("caching latents")  # no run in progress: nothing to stop

    overrides = demo_overrides(tmp_path / "second") + ["training.max_steps=2", "sampling.sample_at_end=false"]
    later = GenericTrainer(load_config(REPO / "training_presets" / "demo_ti2v_5b_lora.json", overrides))
    assert not later.stop.requested
    assert later.train().steps == 2
