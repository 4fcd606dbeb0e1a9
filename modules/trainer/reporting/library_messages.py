"""What a run prints: its own messages on the terminal, known-harmless library notices only in the run's log file.

Some libraries print notices at import or load time that read like errors but need nothing from the user
(the list below, each with why it is harmless). They go to `<workspace>/run.log` with every other message of the
run, not to the terminal. Messages before the workspace is known (imports happen first) are held in memory and
written when the log file opens; a run refused before that writes no file (nothing in the workspace changes).
transformers and diffusers print through handlers of their own; they are switched to the standard logging tree
so the same filter applies to them.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "run.log"
FORMAT = "%(levelname)s %(name)s: %(message)s"

# (pattern, why it is harmless). Matched against the message text.
KNOWN_HARMLESS = (
    # bitsandbytes looks for an optional CPU kernel package; without it the built-in CPU code is used.
    (r"Failed to load CPU gemm_4bit_forward from kernels-community", "optional bitsandbytes CPU kernel"),
    # transformers falls back to its PIL image processor; WAN's image encoder input is prepared the same way.
    (r"requires torchvision \(not installed\); falling back to", "transformers' PIL fallback"),
    # diffusers names the modules it prefers in float32 when a model is cast with .to(dtype); the dtypes are the
    # ones the model.*_dtype settings ask for (found harmless in issue 23's runs).
    (r"_keep_in_fp32_modules|should be kept in float32", "diffusers' float32 modules"),
)
_HARMLESS = re.compile("|".join(f"(?:{pattern})" for pattern, _ in KNOWN_HARMLESS))


def is_known_harmless(record: logging.LogRecord) -> bool:
    return bool(_HARMLESS.search(record.getMessage()))


class TerminalFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_known_harmless(record)


class RunLogFile(logging.Handler):
    """Every message of the run into `<workspace>/run.log`; held in memory until `open` names the workspace."""

    def __init__(self, held_limit: int = 1000):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s " + FORMAT))
        self.held: list[logging.LogRecord] = []
        self.held_limit = held_limit
        self.file = None

    def open(self, workspace: Path) -> Path:
        path = Path(workspace) / LOG_FILE
        if self.file is None:
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the life of the run
            for record in self.held:
                self._write(record)
            self.held = []
        return path

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            if len(self.held) < self.held_limit:
                self.held.append(record)
            return
        self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        try:
            self.file.write(self.format(record) + "\n")
            self.file.flush()
        except (OSError, ValueError):  # a log file that cannot be written must never stop a run
            pass

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        super().close()


@contextlib.contextmanager
def run_logging(level: int) -> Iterator[RunLogFile]:
    """The run's logging, set up before anything imports torch and taken down when the run ends (a later run in the
    same process starts clean): the terminal at `level` without the known-harmless notices, and the run log file
    with everything. Yields the file handler (its `open` is called once the workspace is claimed:
    modules/trainer/reporting/run_start.py)."""
    terminal = logging.StreamHandler()
    terminal.setFormatter(logging.Formatter(FORMAT))
    terminal.addFilter(TerminalFilter())
    terminal.setLevel(level)
    run_file = RunLogFile()
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(terminal)
    root.addHandler(run_file)
    logging.captureWarnings(True)  # warnings.warn notices take the same path
    libraries = [utils for utils in map(_library_logging, ("transformers", "diffusers")) if utils is not None]
    for utils in libraries:  # their own stderr handler off, their records into the tree (at their WARNING level)
        utils.disable_default_handler()
        utils.enable_propagation()
    try:
        yield run_file
    finally:
        for utils in libraries:
            utils.disable_propagation()
            utils.enable_default_handler()
        logging.captureWarnings(False)
        root.removeHandler(terminal)
        root.removeHandler(run_file)
        root.setLevel(previous_level)
        run_file.close()


def run_log_file() -> RunLogFile | None:
    return next((h for h in logging.getLogger().handlers if isinstance(h, RunLogFile)), None)


def _library_logging(library: str):
    try:
        return __import__(f"{library}.utils.logging", fromlist=["logging"])
    except ImportError:
        return None
