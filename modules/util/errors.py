"""The one root of every error a user can fix by changing an input: a file, a folder or a setting.

Its message says what was found, what was expected and the fix; scripts and the window catch `UserError`, print the
message without a traceback and exit with `exit_code` (docs/reliability.md lists the codes). Each family keeps its own
class (ConfigError, DataError, ModelLoadError, ...) derived from this one, so callers can still catch a family.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input; the message is complete (found / expected / fix) and needs no traceback."""

    exit_code = 2
