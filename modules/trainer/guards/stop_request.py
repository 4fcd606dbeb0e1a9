"""A clean stop on Ctrl-C (SIGINT) or SIGTERM, in every phase of a run: loading, caching, training, sampling,
saving.

The CLI (scripts/train.py) installs the handlers with `stop_signals`, which restores the previous handlers when
the run ends; the GUI's Stop button sends SIGINT to its training child, so both take this path. The first signal
only marks the run's `StopRequest` (modules/util/stop_point.py; one per run, never shared with a later run).
Where the stop is taken:
- training: after the current optimizer step (`stop_if_requested`), which keeps the gradient accumulation and
  the data position whole, so the backup written then resumes exactly;
- loading, caching, sampling: at the phase's next safe point (`stop_point`: between model parts, cache entries,
  denoising steps); cache entries are atomic, so every one finished is kept;
- saving: a save is never cut; the stop is taken right after it (no samples or further steps follow).
A second signal ends the process at once; backups are written in a temp folder and renamed
(modules/trainer/state/backups.py), so one cut short is never mistaken for a complete one.

Exit codes (docs/backups_and_resume.md): EXIT_STOPPED after a clean stop with its backup, EXIT_ABORTED after
a second signal.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from modules.util.stop_point import StopRequest, StopRequested, stop_scope

EXIT_STOPPED = 3
EXIT_ABORTED = 130  # the shell's convention for "ended by SIGINT"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """Raised by the loop after the backup of a requested stop was written (or, before the first step, with the
    phase that was cut short and no backup)."""

    def __init__(
        self, step: int, signal_name: str, backup: Path | None, phase: str | None = None, outputs: list | None = None
    ):
        where = f"while {phase}" if phase else f"at step {step}"
        super().__init__(f"stopped {where} on {signal_name}")
        self.step, self.signal_name, self.backup, self.phase = step, signal_name, backup, phase
        self.outputs = list(outputs or [])  # the saved model, when training had finished before the stop

    @classmethod
    def from_stop_point(cls, stopped: StopRequested, step: int = 0) -> TrainingStopped:
        return cls(step, stopped.signal_name, None, stopped.phase)


def handle_signal(request: StopRequest, signum: int) -> None:
    name = signal.Signals(signum).name
    if request.requested:
        # os._exit: no cleanup may run here, because cleanup could be what the user is stopping.
        sys.stdout.flush()
        print(f"\n{name} again: stopping at once, no new backup (earlier complete backups are kept)", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_ABORTED)
    request.request(name)
    print(
        f"\n{name}: stopping at the next safe point (after the current step, cache entry, model part or denoising "
        "step) and writing a backup if a step was trained (send it again to stop at once)",
        file=sys.stderr,
        flush=True,
    )


@contextlib.contextmanager
def stop_signals(request: StopRequest | None = None) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to `request` (a new one by default) and make it the current run's, for the block;
    the handlers found before are put back afterwards. Main thread only, as Python requires."""
    request = request or StopRequest()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: handle_signal(request, signum))
    try:
        with stop_scope(request):
            yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_if_requested_before_training(request: StopRequest, phase: str) -> None:
    """Between loading phases (config, model, cache): a stop asked for there ends the run before any step."""
    if request.requested:
        raise TrainingStopped(0, request.signal_name, None, phase)


def stop_if_requested(trainer) -> None:
    """Called by the loop after each optimizer step (and before the first): back up and raise TrainingStopped.
    With several processes the main process's stop request decides for all, so they stop at the same step."""
    request: StopRequest = trainer.stop
    if not trainer.distributed.main_decides(request.requested):
        return
    step = trainer.progress.global_step
    backup = None
    if step > 0:
        from modules.trainer.state.backups import backup_folders

        # write() returns None when this step is already backed up (by the schedule, or it was resumed from).
        backup = trainer.backups.write(f"stop on {request.signal_name}")
        if backup is None and trainer.distributed.is_main:  # the other processes of several write no backup
            backup = backup_folders(trainer.backups.root)[0]
    raise TrainingStopped(step, request.signal_name or "the main process's stop", backup)


def command_line(argv: list[str], *extra: str) -> str:
    """The command that ran, as a user can paste it: the interpreter that ran it (not a bare `python`, which may
    be another one without the packages), the script and its arguments, and `extra` arguments."""
    return shlex.join([sys.executable, *argv, *extra])


RESUME_ARGUMENTS = ("--config-value", "backup.continue_last_backup=true")


def stop_message(stopped: TrainingStopped, argv: list[str]) -> str:
    """What was kept and the exact command that resumes (the same command plus continue_last_backup)."""
    where = f"while {stopped.phase}" if stopped.phase else f"at step {stopped.step}"
    if stopped.outputs:
        kept = f"the trained model ({', '.join(map(str, stopped.outputs))}); training had finished"
        how = "Nothing to resume; only what came after the save (the end samples) was skipped."
    elif stopped.backup is None:
        kept = "nothing to back up yet (no step finished); the model files and every cache entry finished are kept"
        how = f"Start again with: {command_line(argv)}"
    else:
        kept = f"backup {stopped.backup} (weights, optimizer, EMA, random states and the data position)"
        how = (
            f"Resume exactly where it stopped with:\n  {command_line(argv, *RESUME_ARGUMENTS)}\n"
            "(or set backup.continue_last_backup to true in the config)"
        )
    return f"Stopped {where} on {stopped.signal_name}. Kept: {kept}.\n{how}"
