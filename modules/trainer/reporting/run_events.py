"""A machine-readable record of a run: one JSON object per line, for the GUI (or any watcher) to follow.

`scripts/train.py --events-file PATH` opens the file; the run log (modules/trainer/reporting/run_log.py) and train.py
emit into it. Each line is complete and flushed when written, so a reader polling the file never sees half
an event. Kinds: start {total_steps, start_step}, step {step, total_steps, loss, lr}, message {text},
sample {path}, done {steps, outputs, samples}, stopped {step, backup, text}, error {text},
data {concepts, other}: after the data is prepared, what was corrected, unused or skipped per concept and per
file (modules/data/flow/report.py, DataReport.record).
Without --events-file nothing is written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO

_sink: IO[str] | None = None


def open_events_file(path: str | Path) -> None:
    global _sink
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _sink = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the life of the process


def emit(kind: str, **fields) -> None:
    if _sink is None:
        return
    _sink.write(json.dumps({"event": kind, "time": time.time(), **fields}, default=str) + "\n")
    _sink.flush()


def read_events(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events after byte `offset`, and the offset to read from next (a partial last line waits)."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end
