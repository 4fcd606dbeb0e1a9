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
    label: str = ""  # the declared label, else one made from the name (see `readable_label`)
    unit: str | None = None
    applies: tuple = ()  # ((other field, allowed values), ...): shown only while every one holds
    hidden: bool = False
    labelled: bool = False  # the label was declared (not made from the name)
    path: str | None = None  # a path setting's kind (modules/config/fields.py PATH_KINDS): which pickers it gets
    file_types: tuple = ()  # the file dialog's filters: (("LoRA", "*.safetensors"), ...)

    def applies_to(self, values: dict) -> bool:
        return all(get_path(values, name) in allowed for name, allowed in self.applies)

    @property
    def section(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def is_dataclass_list(self) -> bool:
        return self.kind is list and dataclasses.is_dataclass(self.item_kind)


def readable_label(name: str) -> str:
    """'training.adafactor.beta1' -> 'Adafactor beta1': the field's own name, after its sub-section's (so settings
    of one optimizer are told apart from another's), underscores as spaces, the first letter capitalised."""
    parts = name.split(".")
    words = parts[-1].replace("_", " ")
    if len(parts) > 2 and not parts[-2].isdigit():  # a nested section, not an item of a list
        words = f"{parts[-2].replace('_', ' ')} {words}"
    return words[:1].upper() + words[1:]


def field_specs(config_class: type, prefix: str = "", applies: tuple = ()) -> list[FieldSpec]:
    """Every leaf setting of `config_class` in declaration order; nested sections are flattened (a section's
    `applies` holds for each of its fields)."""
    specs = []
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        kind, optional = _unwrap_optional(hints[f.name])
        name = f"{prefix}{f.name}"
        meta = f.metadata
        own_applies = applies + tuple((key, tuple(values)) for key, values in (meta.get("applies") or {}).items())
        if dataclasses.is_dataclass(kind):
            specs += field_specs(kind, f"{name}.", own_applies)
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
                label=meta.get("label") or readable_label(name),
                unit=meta.get("unit"),
                applies=own_applies,
                hidden=bool(meta.get("hidden")),
                labelled="label" in meta,
                path=meta.get("path"),
                file_types=tuple(meta.get("file_types") or ()),
            )
        )
    return specs


def section_titles(config_class: type) -> dict[str, str]:
    """The title of each top-level section: its declared label (`metadata={"label": ...}`), else one made from
    its name; a top-level setting is a section of its own with no title (its label says what it is)."""
    hints = typing.get_type_hints(config_class)
    return {
        f.name: (f.metadata.get("label") or readable_label(f.name)) if dataclasses.is_dataclass(hints[f.name]) else ""
        for f in dataclasses.fields(config_class)
    }


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
