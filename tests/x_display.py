"""An X display for the GUI tests: the one in DISPLAY, else a private Xvfb started here on a free display number,
with a window manager (openbox) on it, so closing a window goes through the window manager as on a desktop.

Where no X server can be had the tests are skipped with the reason printed; under CI=true they fail instead,
because CI must run them (scripts/install_display.sh installs Xvfb there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
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
    manager = _start_window_manager()
    try:
        yield display
    finally:
        if manager is not None:
            manager.terminate()
            manager.wait(timeout=10)
        del os.environ["DISPLAY"]
        server.terminate()
        server.wait(timeout=10)


def _start_window_manager() -> subprocess.Popen | None:
    """openbox on the display in DISPLAY, once it manages windows (wmctrl -m answers); None if not installed."""
    openbox = shutil.which("openbox")
    if openbox is None or shutil.which("wmctrl") is None:
        print("\nno window manager (openbox, wmctrl): the close-button tests skip (scripts/install_display.sh)")
        return None
    manager = subprocess.Popen([openbox, "--sm-disable"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # openbox on a loaded machine can take a while
    while time.monotonic() < deadline:
        if subprocess.run(["wmctrl", "-m"], capture_output=True).returncode == 0:
            return manager
        time.sleep(0.1)
    manager.kill()
    manager.wait()
    return None


def window_manager_running() -> bool:
    return shutil.which("wmctrl") is not None and subprocess.run(["wmctrl", "-m"], capture_output=True).returncode == 0


def close_with_window_manager(title: str) -> None:
    """Click the close button of the window titled `title`, as far as X is concerned: the window manager sends
    the window WM_DELETE_WINDOW (wmctrl -c asks it to)."""
    subprocess.run(["wmctrl", "-c", title], check=True, timeout=10)
