"""Slow work off the Tk thread: model detection, memory planning and concept scans import torch and diffusers,
read model headers and decode media, which took 20-40 s on the Tk thread and froze the window.

They run in one worker *process* (a thread would not do: importing torch's extension libraries holds the GIL
for long stretches, which would stall Tk just the same). Results come back to Tk's thread through `after()`
polling; while any job is pending the window shows what it is waiting for. A newer job with the same key
supersedes an older one, whose result is then dropped (the settings changed meanwhile).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

POLL_MS = 50


class Background:
    def __init__(self, widget, on_busy: Callable[[list[str]], None]):
        self.widget = widget
        self.on_busy = on_busy
        self.pool: ProcessPoolExecutor | None = None
        self.jobs: dict[str, tuple[Future, str, Callable[[Any], None]]] = {}
        self.polling = False

    def submit(self, key: str, label: str, on_done: Callable[[Any], None], fn: Callable, *args) -> None:
        """Run fn(*args) in the worker; on_done(result or the exception) later, on Tk's thread."""
        if self.pool is None:
            # spawn: a fresh interpreter, never a fork of a process that holds Tk and X connections.
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        try:
            future = self.pool.submit(fn, *args)
        except BrokenProcessPool:
            self.pool = None  # the worker died (killed, out of memory): the next job gets a new one
            return self.submit(key, label, on_done, fn, *args)
        old = self.jobs.get(key)
        if old is not None:
            old[0].cancel()
        self.jobs[key] = (future, label, on_done)
        self._show_busy()
        if not self.polling:
            self.polling = True
            self.widget.after(POLL_MS, self._poll)

    def busy(self) -> list[str]:
        return [label for _, label, _ in self.jobs.values()]

    def _poll(self) -> None:
        for key, (future, _, on_done) in list(self.jobs.items()):
            if not future.done():
                continue
            del self.jobs[key]
            if future.cancelled():
                continue
            error = future.exception()
            on_done(error if error is not None else future.result())
        self._show_busy()
        if self.jobs:
            self.widget.after(POLL_MS, self._poll)
        else:
            self.polling = False

    def _show_busy(self) -> None:
        self.on_busy(self.busy())

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
