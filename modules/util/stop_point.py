"""Safe points where a requested stop (Ctrl-C, SIGTERM, the GUI's Stop) is taken, in every phase of a run.

A stop request belongs to one run: `StopRequest` is made by the run (scripts/train.py, or a caller of
GenericTrainer), made the current one with `stop_scope`, and forgotten when that scope ends, so a stop received
during one in-process run never reaches a later one. The signal handlers themselves live in
modules/trainer/guards/stop_request.py; this module is the ground floor every layer may call.

Each phase calls `stop_point(phase)` between units of its work, where stopping loses nothing: loading between the
model's parts, caching between cache entries (each entry is written atomically), sampling between denoising
steps (the sample cut short is not written). It raises `StopRequested`, which derives from BaseException (as
KeyboardInterrupt does) so that the `except Exception` of a preview or a save fallback does not swallow it.
Training steps are not stopped here: the loop stops after an optimizer step and writes a backup first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class StopRequested(BaseException):
    """A stop was asked for and `phase` reached a safe point; what was finished before it is kept."""

    def __init__(self, phase: str, signal_name: str):
        super().__init__(f"stopped while {phase} on {signal_name}")
        self.phase, self.signal_name = phase, signal_name


class StopRequest:
    """One run's stop request: None until a signal (or a caller) asks, then the signal's name."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def request(self, signal_name: str) -> None:
        self.signal_name = signal_name


# The request of the run in progress in this context; None outside a run (then no stop point ever stops).
_current: ContextVar[StopRequest | None] = ContextVar("current_stop_request", default=None)


@contextlib.contextmanager
def stop_scope(request: StopRequest) -> Iterator[StopRequest]:
    """Make `request` the current run's for the duration of the block, and forget it afterwards."""
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


def current_stop_request() -> StopRequest | None:
    return _current.get()


def stop_point(phase: str) -> None:
    """Raise StopRequested if the current run was asked to stop; call it only where stopping loses nothing."""
    request = _current.get()
    if request is not None and request.signal_name is not None:
        raise StopRequested(phase, request.signal_name)
