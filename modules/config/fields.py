"""Self-describing config fields: each carries its type, default, help, and allowed values or range.

The GUI and the docs can be generated from this metadata, and validation reads it, so the rules for a
setting live in exactly one place: its declaration.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# What a path setting names: an existing file, an existing folder, either (a model part may be a file or a
# folder), or a file to be written.
PATH_KINDS = ("file", "folder", "file_or_folder", "save_file")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: tuple | None = None,
    min: float | None = None,
    max: float | None = None,
    default_factory: Any = dataclasses.MISSING,
    label: str | None = None,
    unit: str | None = None,
    applies: dict[str, tuple] | None = None,
    hidden: bool = False,
    path: str | None = None,
    file_types: tuple[tuple[str, str], ...] | None = None,
) -> Any:
    """Declare a config field; `help` is shown in the GUI and in validation errors.

    For the GUI (all optional, so a field without them still gets a readable label from its name): `label` the
    human name, `unit` shown beside it, `applies` {other field: values} when the field matters only for those
    values of another (on a section: for all its fields), `hidden` for fields the user never edits, `path` the
    kind of a path setting (one of PATH_KINDS: which pickers the GUI offers) with `file_types` for its file
    dialog, e.g. (("LoRA", "*.safetensors"),).
    """
    if path is not None and path not in PATH_KINDS:
        raise ValueError(f"path={path!r}: expected one of {PATH_KINDS}")
    metadata = {"help": help, "choices": choices, "min": min, "max": max}
    ui = {"label": label, "unit": unit, "applies": applies, "hidden": hidden or None, "path": path}
    ui["file_types"] = file_types
    metadata.update({key: value for key, value in ui.items() if value is not None})
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def describe(config_class: type) -> list[dict]:
    """A flat description of every field (dotted name, type, default, help, choices, range)."""
    rows = []
    hints = _type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            for row in describe(kind):
                rows.append({**row, "name": f"{f.name}.{row['name']}"})
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        rows.append(
            {
                "name": f.name,
                "type": getattr(kind, "__name__", str(kind)),
                "default": default,
                "required": required,
                **f.metadata,
            }
        )
    return rows


def _type_hints(config_class: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(config_class)
