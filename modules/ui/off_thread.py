"""File decoding off Tk's thread: a function runs on a thread of its own (it must not touch Tk), and its result
is handed to a callback on Tk's thread, found by polling with `after()`. Only the latest request's result is
delivered: a newer request supersedes one still running (the user chose another sample meanwhile)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

POLL_MS = 40


class OffThread:
    def __init__(self, widget, on_done: Callable[[Any], None]):
        self.widget, self.on_done = widget, on_done
        self.results: queue.Queue = queue.Queue()
        self.latest = 0
        self.pending = 0  # requests whose result has not been collected yet (each gives exactly one)
        self.polling = False

    def request(self, fn: Callable, *args) -> None:
        """Run fn(*args) on a thread; on_done(its result, or the exception it raised) later, on Tk's thread."""
        self.latest += 1
        self.pending += 1
        threading.Thread(target=self._run, args=(self.latest, fn, args), daemon=True, name="ui-decode").start()
        if not self.polling:
            self.polling = True
            self.widget.after(POLL_MS, self._poll)

    def cancel(self) -> None:
        """Drop the result of the request still running."""
        self.latest += 1

    def _run(self, number: int, fn: Callable, args: tuple) -> None:
        try:
            self.results.put((number, fn(*args)))
        except Exception as error:  # noqa: BLE001 - handed to on_done, which reports it
            self.results.put((number, error))

    def _poll(self) -> None:
        delivered = None
        while True:
            try:
                number, result = self.results.get_nowait()
            except queue.Empty:
                break
            self.pending -= 1
            if number == self.latest:
                delivered = (result,)
        if self.pending > 0:
            self.widget.after(POLL_MS, self._poll)  # a request is still running
        else:
            self.polling = False
        if delivered is not None:
            self.on_done(delivered[0])
