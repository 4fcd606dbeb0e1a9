"""Versioned config migrations: a file written by an older trainer is upgraded step by step on load.

To change the format: bump CURRENT_VERSION, and add `MIGRATIONS[old] = function` that turns a
version-`old` dict into a version-`old + 1` dict. Never edit an existing migration.
"""

from __future__ import annotations

from collections.abc import Callable

from modules.config.validation import ConfigError

CURRENT_VERSION = 1


def _from_0(data: dict) -> dict:
    """Version 0 (the first prototype) kept LoRA settings at the top level as lora_rank / lora_alpha."""
    data = dict(data)
    lora = dict(data.get("lora", {}))
    for old, new in (("lora_rank", "rank"), ("lora_alpha", "alpha")):
        if old in data:
            lora[new] = data.pop(old)
    if lora:
        data["lora"] = lora
    return data


MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_0}


def migrate(data: dict, where: str) -> dict:
    version = data.get("version", CURRENT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{where}: version: expected a whole number, got {version!r}")
    if version > CURRENT_VERSION:
        raise ConfigError(
            f"{where}: version {version} was written by a newer trainer (this one reads up to {CURRENT_VERSION}); "
            f"update the trainer"
        )
    while version < CURRENT_VERSION:
        if version not in MIGRATIONS:
            raise ConfigError(f"{where}: version {version} is too old to migrate (oldest supported: {min(MIGRATIONS)})")
        data = MIGRATIONS[version](data)
        version += 1
        data["version"] = version
    return data
