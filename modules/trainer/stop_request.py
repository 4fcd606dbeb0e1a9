"""A clean stop on Ctrl-C (SIGINT) or SIGTERM: finish the current step, write a backup, say how to resume.

The CLI (scripts/train.py) installs the handlers; the GUI's Stop button sends SIGINT to its training child,
so both take this path. The first signal only sets a flag that the loop reads after each optimizer step
(`stop_if_requested`): stopping there keeps the gradient accumulation and the data position whole, so the
backup resumes exactly. A second signal ends the process at once; backups are written in a temp folder and
renamed (modules/trainer/backups.py), so one cut short is never mistaken for a complete one.

Exit codes (docs/backups_and_resume.md): EXIT_STOPPED after a clean stop with its backup, EXIT_ABORTED after
a second signal.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

EXIT_STOPPED = 3
EXIT_ABORTED = 130  # the shell's convention for "ended by SIGINT"


class TrainingStopped(Exception):
    """Raised by the loop after the backup of a requested stop was written."""

    def __init__(self, step: int, signal_name: str, backup: Path | None):
        super().__init__(f"stopped at step {step} on {signal_name}")
        self.step, self.signal_name, self.backup = step, signal_name, backup


class _StopRequest:
    def __init__(self):
        self.signal_name: str | None = None

    def handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            # os._exit: no cleanup may run here, because cleanup could be what the user is stopping.
            sys.stdout.flush()
            print(
                f"\n{name} again: stopping at once, no new backup (earlier complete backups are kept)", file=sys.stderr
            )
            sys.stderr.flush()
            os._exit(EXIT_ABORTED)
        self.signal_name = name
        print(
            f"\n{name}: stopping after the current step and writing a backup (send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )


STOP = _StopRequest()


def install_stop_handlers() -> None:
    """Route SIGINT and SIGTERM to the clean stop (main thread only, as Python requires)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, STOP.handle)


def stop_if_requested_before_training() -> None:
    """Between loading phases (config, model, cache): a stop asked for there ends the run before any step."""
    if STOP.signal_name is not None:
        raise TrainingStopped(0, STOP.signal_name, None)


def stop_if_requested(trainer) -> None:
    """Called by the loop after each optimizer step (and before the first): back up and raise TrainingStopped."""
    if STOP.signal_name is None:
        return
    step = trainer.progress.global_step
    backup = None
    if step > 0:
        from modules.trainer.backups import backup_folders

        # write() returns None when this step is already backed up (by the schedule, or it was resumed from).
        backup = trainer.backups.write(f"stop on {STOP.signal_name}") or backup_folders(trainer.backups.root)[0]
    raise TrainingStopped(step, STOP.signal_name, backup)


def stop_message(stopped: TrainingStopped, argv: list[str]) -> str:
    """What was kept and the exact command that resumes (the same command plus continue_last_backup)."""
    resume = ["python", *argv, "--config-value", "backup.continue_last_backup=true"]
    if stopped.backup is None:
        kept = "nothing to back up yet (no step finished); the cache built so far is kept"
        how = f"Start again with: {shlex.join(['python', *argv])}"
    else:
        kept = f"backup {stopped.backup} (weights, optimizer, EMA, random states and the data position)"
        how = (
            f"Resume exactly where it stopped with:\n  {shlex.join(resume)}\n"
            "(or set backup.continue_last_backup to true in the config)"
        )
    return f"Stopped at step {stopped.step} on {stopped.signal_name}. Kept: {kept}.\n{how}"
