"""Reads a TrainConfig from a JSON file: parse, migrate, apply command-line overrides, validate."""

from __future__ import annotations

import json
from pathlib import Path

from modules.config.memory_config import check_memory
from modules.config.migrations import migrate
from modules.config.no_op import check_trains_something
from modules.config.optimizer_config import check_optimizer_settings
from modules.config.train_config import TrainConfig
from modules.config.validation import ConfigError, from_dict, to_dict


def load_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the config file ({error.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{where}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a JSON object")
    data = migrate(data, where)
    for override in overrides:
        apply_override(data, override)
    data = _inline_concepts_file(data, path.parent, where)
    try:
        config = from_dict(TrainConfig, data)
        check_consistency(config)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return config


def config_from_dict(data: dict) -> TrainConfig:
    """Validate an in-memory config (tests, GUI) exactly as a file would be."""
    config = from_dict(TrainConfig, migrate(dict(data), "config"))
    check_consistency(config)
    return config


def save_config(config: TrainConfig, path: Path) -> None:
    """Write `config` as a JSON file that load_config reads back equal (the GUI's Save and each GUI run)."""
    from modules.util.atomic import atomic_write

    text = json.dumps(to_dict(config), indent=2)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def apply_override(data: dict, override: str) -> None:
    """`training.learning_rate=1e-4` or `data.concepts.0.path=clips`; the value is JSON, else a string."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--config-value {override!r}: expected KEY=VALUE, e.g. training.max_steps=100")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):  # e.g. training.max_steps.value: max_steps holds a number
            setting = ".".join(parents[: depth + 1])
            raise ConfigError(
                f"--config-value {override!r}: {setting} is a single value ({_show_value(node)}), it has no "
                f"'{parents[depth + 1] if depth + 1 < len(parents) else last}'. Fix: --config-value {setting}=VALUE"
            )
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    else:
        node[last] = value


def check_consistency(config: TrainConfig) -> None:
    """Rules that involve more than one field or the meaning of a value."""
    if not config.model.base_path:
        raise ConfigError("model.base_path: required (a WAN 2.2 diffusers folder or hub id)")
    if (config.data.frames - 1) % 4:
        lower = (config.data.frames - 1) // 4 * 4 + 1
        raise ConfigError(f"data.frames: {config.data.frames} is not 4n+1; use {lower} or {lower + 4}")
    for i, concept in enumerate(config.data.concepts):
        if concept.frames is not None and (concept.frames - 1) % 4:
            lower = (concept.frames - 1) // 4 * 4 + 1
            raise ConfigError(f"data.concepts[{i}].frames: {concept.frames} is not 4n+1; use {lower} or {lower + 4}")
    if not config.data.concepts:
        raise ConfigError("data.concepts: at least one concept is needed (or a concepts_file that lists them)")
    if not any(concept.enabled for concept in config.data.concepts):
        names = ", ".join(f"data.concepts[{i}].enabled" for i in range(len(config.data.concepts)))
        raise ConfigError(f"{names}: every concept is switched off, so nothing would train. Fix: enable at least one.")
    for i, sample in enumerate(config.sampling.samples):
        if not sample.prompt:
            raise ConfigError(f"sampling.samples[{i}].prompt: empty")
    check_fp8_storage(config)
    check_optimizer_settings(config.training)
    if config.lora.use_dora and config.lora.type != "lora":
        raise ConfigError(
            f"lora.use_dora: DoRA applies to lora.type 'lora', not {config.lora.type!r}. Fix: turn one of them off"
        )
    if (config.lora.type != "lora" or config.lora.use_dora) and config.output.lora_format == "diffusers":
        raise ConfigError(
            f"output.lora_format: diffusers cannot load lora.type {config.lora.type!r} / DoRA adapters. "
            "Fix: set output.lora_format to comfyui or kohya (docs/lora_format.md)"
        )
    check_memory(config)
    check_trains_something(config)  # settings that make the run a no-op (modules/config/no_op.py)


def check_fp8_storage(config: TrainConfig) -> None:
    """fp8 is a storage dtype only: the matmuls need a 16-bit compute dtype, and trained weights cannot be fp8."""
    if config.model.transformer_dtype != "float8_e4m3fn":
        return
    if config.training.train_dtype not in ("bfloat16", "float16"):
        raise ConfigError(
            f"model.transformer_dtype: float8_e4m3fn stores the weights only; they are computed in "
            f"training.train_dtype, "
            f"which is {config.training.train_dtype!r}. Fix: set training.train_dtype to bfloat16 (or float16), or "
            "model.transformer_dtype to bfloat16."
        )
    if config.training_method == "full":
        raise ConfigError(
            "model.transformer_dtype: float8_e4m3fn cannot be used with training_method 'full': a fully fine-tuned "
            "expert "
            "trains in finetune.weight_dtype, and fp8 storage is for frozen weights. Fix: set model.transformer_dtype "
            "to "
            "bfloat16 (or train a LoRA: training_method 'lora')."
        )


def _inline_concepts_file(data: dict, base_dir: Path, where: str) -> dict:
    data_section = data.get("data")
    if not isinstance(data_section, dict) or not data_section.get("concepts_file"):
        return data
    concepts_path = Path(data_section["concepts_file"])
    if not concepts_path.is_absolute():
        concepts_path = base_dir / concepts_path
    try:
        concepts = json.loads(concepts_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{where}: data.concepts_file: cannot read {concepts_path}: {error}") from None
    if not isinstance(concepts, list):
        raise ConfigError(f"{where}: data.concepts_file: {concepts_path} must hold a JSON list of concepts")
    return {**data, "data": {**data_section, "concepts": list(data_section.get("concepts", [])) + concepts}}


def _show_value(value) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--config-value {key}: '{part}' is not an index of a list of {len(node)} items")
    return int(part)
