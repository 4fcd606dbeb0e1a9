"""Opening a window needs Tk and a display; when either is missing, say in one line what to install or set."""

from __future__ import annotations

from modules.util.errors import UserError


class NoWindowError(UserError, RuntimeError):
    """No display or no Tk: the message says what to install or set."""

    exit_code = 1  # docs/ui.md: the window exits 1 when it cannot open


def check_window_possible() -> None:
    """Raise NoWindowError with one line that says what to do, instead of a Tk traceback."""
    try:
        import tkinter
    except ImportError:
        raise NoWindowError(
            "Tk is not available to this Python: install it (Debian/Ubuntu: apt-get install python3-tk; "
            "other systems: a Python built with Tk) and run again"
        ) from None
    try:
        import customtkinter  # noqa: F401
    except ImportError:
        raise NoWindowError(
            "customtkinter is not installed: run scripts/install.sh (or pip install customtkinter==5.2.2)"
        ) from None
    try:
        probe = tkinter.Tk()
    except tkinter.TclError as error:
        raise NoWindowError(
            f"cannot open a window ({error}): run it on a desktop, over 'ssh -X', or under a virtual display "
            "('xvfb-run python scripts/train_ui.py'); without a display, train with scripts/train.py"
        ) from None
    probe.destroy()
