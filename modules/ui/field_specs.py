"""The GUI's view of the config declarations: one FieldSpec per setting, read from the dataclasses themselves.

Nothing here names a setting: type, default, help, choices and range come from each field's `setting(...)`
metadata (modules/config/fields.py), so a field added to TrainConfig gets a widget without UI code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    name: str  # dotted, e.g. "training.learning_rate"
    kind: Any  # bool, int, float, str, list (of primitives) or a dataclass (the item type of a list of dataclasses)
    optional: bool  # `X | None`: an empty widget means None
    default: Any
    required: bool
    help: str
    choices: tuple | None
    min: float | None
    max: float | None
    item_kind: Any = None  # for lists: the item type (a primitive, or a dataclass edited by a list editor)

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def is_dataclass_list(self) -> bool:
        return self.kind is list and dataclasses.is_dataclass(self.item_kind)


def field_specs(config_class: type, prefix: str = "") -> list[FieldSpec]:
    """Every leaf setting of `config_class` in declaration order; nested sections are flattened."""
    specs = []
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind, optional = _unwrap_optional(hints[f.name])
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            specs += field_specs(kind, f"{name}.")
            continue
        item_kind = None
        if typing.get_origin(kind) is list:
            (item_kind,) = typing.get_args(kind)
            kind = list
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        meta = f.metadata
        specs.append(
            FieldSpec(
                name=name,
                kind=kind,
                optional=optional,
                default=default,
                required=required,
                help=meta.get("help", ""),
                choices=meta.get("choices"),
                min=meta.get("min"),
                max=meta.get("max"),
                item_kind=item_kind,
            )
        )
    return specs


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(kind) if o is not type(None)]
        return options[0], len(options) < len(typing.get_args(kind))
    return kind, False


def get_path(data: dict, name: str) -> Any:
    node = data
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return dataclasses.MISSING
        node = node[part]
    return node


def set_path(data: dict, name: str, value: Any) -> None:
    *parents, last = name.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
