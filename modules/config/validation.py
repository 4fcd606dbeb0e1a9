"""Builds config dataclasses from JSON data, rejecting anything that does not fit the declarations.

Every error names the dotted key, the value found and what is allowed, so a user can fix the file
without reading code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

# ConfigError is defined on the ground floor (util) and imported from here by most callers.
from modules.util.errors import ConfigError


def from_dict(config_class: type, data: Any, where: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected an object with keys, got {_show(data)}")
    hints = _type_hints(config_class)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ConfigError(f"{_join(where, unknown[0])}: unknown key. Allowed keys here: {allowed}")
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required ({f.metadata.get('help', '')})")
            continue
        values[name] = _convert(hints[name], data[name], key, f.metadata)
    return config_class(**values)


@functools.lru_cache(maxsize=256)
def _type_hints(config_class: type) -> dict:
    """typing.get_type_hints, once per class: it evaluates every annotation and was most of a validation's time
    (the GUI validates after each edit)."""
    return typing.get_type_hints(config_class)


def to_dict(config: Any) -> Any:
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, list):
        return [to_dict(v) for v in config]
    return config


def _convert(kind: Any, value: Any, key: str, metadata: dict) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(o for o in options if o is not type(None))
        origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        return from_dict(kind, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        (item_kind,) = typing.get_args(kind)
        return [_convert(item_kind, v, f"{key}[{i}]", {}) for i, v in enumerate(value)]
    value = _check_type(kind, value, key, metadata)
    _check_allowed(value, key, metadata)
    return value


def _check_type(kind: Any, value: Any, key: str, metadata: dict | None = None) -> Any:
    # bool is a subclass of int in Python; a config that says `true` for a number is a mistake.
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # JSON parsers accept NaN/Infinity; no setting means them
                raise ConfigError(f"{key}: {_show(value)} is not a finite number. Fix: give {_a_number_for(metadata)}")
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{key}: unsupported field type {kind}")
    raise ConfigError(f"{key}: expected {_type_name(kind)}, got {_show(value)}")


def _a_number_for(metadata: dict | None) -> str:
    """The fix for a non-finite value, from the field's own range (flow_shift: at least 0.01, not "1e-4")."""
    low, high = (metadata or {}).get("min"), (metadata or {}).get("max")
    if low is not None and high is not None:
        return f"a number from {low:g} to {high:g}"
    if low is not None:
        return f"a number of at least {low:g}"
    if high is not None:
        return f"a number of at most {high:g}"
    return "a finite number"


def _check_allowed(value: Any, key: str, metadata: dict) -> None:
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {_show(value)} is not allowed. Choose one of: {', '.join(map(str, choices))}")
    low, high = metadata.get("min"), metadata.get("max")
    if low is not None and value < low or high is not None and value > high:
        bounds = f"at least {low}" if high is None else f"at most {high}" if low is None else f"from {low} to {high}"
        raise ConfigError(f"{key}: {_show(value)} is out of range; allowed: {bounds}")


def _type_name(kind: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
