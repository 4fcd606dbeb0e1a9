"""An X display for the GUI tests: the one in DISPLAY, else a private Xvfb started here on a free display number.

Where no X server can be had the tests are skipped with the reason printed; under CI=true they fail instead,
because CI must run them (scripts/install_display.sh installs Xvfb there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def _no_display(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"GUI tests must run under CI=true, but {reason}")
    print(f"\nskipping GUI tests: {reason}")
    pytest.skip(reason)


@contextmanager
def x_display() -> Iterator[str]:
    """Yield a display name (":N") that Tk can open; a Xvfb started here is stopped afterwards."""
    try:
        import tkinter  # noqa: F401

        import customtkinter  # noqa: F401
    except ImportError as error:
        _no_display(f"{error.name} cannot be imported (scripts/install.sh installs customtkinter; Tk: python3-tk)")
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        _no_display("DISPLAY is unset and Xvfb is not installed (run scripts/install_display.sh)")
    read_end, write_end = os.pipe()
    # -displayfd: Xvfb picks a free display number itself and writes it to the pipe once it accepts clients.
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        server.wait()
        _no_display("Xvfb did not start")
    display = f":{number}"
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        del os.environ["DISPLAY"]
        server.terminate()
        server.wait(timeout=10)
