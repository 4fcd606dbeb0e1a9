"""The one root of every error a user can fix by changing an input: a file, a folder or a setting.

Its message says what was found, what was expected and the fix; scripts and the window catch `UserError`, print the
message without a traceback and exit with `exit_code` (docs/reliability.md lists the codes). Each family keeps its own
class (ConfigError, DataError, ModelLoadError, ...) derived from this one, so callers can still catch a family.
An error that means a bug in this code (stages that do not fit together, an unknown internal name) is not a user
error and must not derive from it: it keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem in the user's input; the message is complete (found / expected / fix) and needs no traceback."""

    exit_code = EXIT_USER_ERROR


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message says which key, what was wrong and what is allowed.

    Defined here, on the ground floor, so that utilities can raise it without importing the config package
    (modules/config/validation.py re-exports it, where most callers import it from)."""


def report_user_error(error: UserError, where: str = "") -> int:
    """Print the message as one line on stderr and return the exit code the docs list for it."""
    print(f"error{where}: {error}", file=sys.stderr)
    return error.exit_code


def run_script(main: Callable[..., int | None], *args) -> int:
    """A script's `main`, with every user error printed as one line (no traceback) and its exit code returned.

    Scripts end with `sys.exit(run_script(main))` (or call it from a `main(argv)` that tests call in-process);
    tests/test_user_errors.py checks that each one does."""
    try:
        return main(*args) or 0
    except UserError as error:
        return report_user_error(error)
