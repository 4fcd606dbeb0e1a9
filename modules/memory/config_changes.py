"""A copy of a config with some dotted settings changed: how the planners try the changes they may recommend."""

from __future__ import annotations

import copy


def with_changes(config, changes: dict[str, object]):
    """A deep copy of `config` with each `section.setting` in `changes` set to its value."""
    changed = copy.deepcopy(config)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        target = changed
        for part in path:
            target = getattr(target, part)
        setattr(target, last, value)
    return changed
