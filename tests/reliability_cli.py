"""Helpers for the reliability tests: the three scripts run as a user runs them, and snapshots of what a run
left on disk (so a test can assert that a failing run changed none of it)."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_PRESET = REPO / "training_presets" / "demo_ti2v_5b_lora.json"


def run_script(
    script: str, *args: str, file_size_limit: int | None = None, env: dict | None = None, wrap: list[str] = ()
) -> subprocess.CompletedProcess:
    """`python scripts/<script> args...`; `file_size_limit` (bytes) makes writes past it fail with EFBIG,
    as on a full disk (SIGXFSZ ignored so the write returns an error instead of killing the process)."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [*wrap, sys.executable, str(REPO / "scripts" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        preexec_fn=limit_file_size if file_size_limit else None,
    )


def train(*config_values: str, **kwargs) -> subprocess.CompletedProcess:
    args = ["--config-path", str(DEMO_PRESET)]
    for value in config_values:
        args += ["--config-value", value]
    return run_script("train.py", *args, **kwargs)


def error_lines(done: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in done.stderr.splitlines() if line.startswith("error:") or "Fix" in line)


def assert_known_error(done: subprocess.CompletedProcess, *names: str) -> str:
    """Exit code 2, one `error:` message that names each of `names` and says the fix, and no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    message = done.stderr[done.stderr.index("error:") :]
    for name in names:
        assert name in message, f"{name!r} not in: {message}"
    assert "Fix" in message, message
    return message


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (the lock file excluded: it is the run's, not its results)."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and path.name != "run.lock":
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
