"""WAN 2.2's numbers for the memory planner (modules/memory/), counted from the model's own configs.

Once a model is loaded, its parts' own configs (modules/wan/model_facts.py, reached as WanModel.memory_facts());
before loading, the model folder's when `model.base_path` is a local diffusers folder (so the tiny demo models plan as
tiny models), else the real ones in resources/model_configs/ (`memory_facts`). Parameter counts come from building each
part on the meta device (no memory, no weights read), so they are the real modules' counts, not a formula.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from modules.memory.facts import ModelFacts
from modules.util.errors import UserError
from modules.wan.model_facts import (  # noqa: F401 (transformer_facts: re-exported for the benchmarks and tests)
    model_facts_from,
    part_config_in,
    transformer_facts,
)
from modules.wan.variants import VARIANTS, WanVariant


class PlanInputError(UserError, ValueError):
    """The config does not say enough to plan (the message names the setting)."""


def _local_folder(config) -> Path | None:
    path = Path(config.model.base_path).expanduser() if config.model.base_path else None
    return path if path is not None and (path / "model_index.json").is_file() else None


def variant_of(config) -> WanVariant:
    if config.model.variant != "auto":
        return VARIANTS[config.model.variant]
    folder = _local_folder(config)
    if folder is not None:
        from modules.wan.loading.detection import detect_variant

        return detect_variant(folder)
    raise PlanInputError(
        f"model.variant is 'auto' and model.base_path ({config.model.base_path or 'empty'}) is not a local diffusers "
        "folder, so the planner cannot tell the model. Fix: set model.variant (TI2V-5B, T2V-A14B or I2V-A14B)."
    )


def _part_config(config, variant: WanVariant, part: str) -> str:
    return part_config_in(_local_folder(config), variant, part)


def memory_facts(config) -> ModelFacts:
    """Facts from the config's sources, before any weights load (a local folder's configs, else the real ones)."""
    variant = variant_of(config)
    facts = model_facts_from(
        variant,
        _part_config(config, variant, "transformer"),
        _part_config(config, variant, "text_encoder"),
        _part_config(config, variant, "vae"),
        config.model.text_max_length,
    )
    return dataclasses.replace(
        facts, source_dtype=source_dtype(config), text_encoder_source_dtype=text_encoder_source_dtype(config)
    )


# safetensors codes -> the config's dtype names
_DTYPE_NAMES = {"F8_E4M3": "float8_e4m3fn", "BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def text_encoder_source_dtype(config) -> str | None:
    """The dtype of UMT5's matrices in base_path's text_encoder folder (from a header); None where UMT5 comes from its
    own file (read into the process's own memory) or no local folder is there."""
    folder = _local_folder(config)
    if config.model.text_encoder_path or folder is None:
        return None
    return _first_matrix_dtype(sorted((folder / "text_encoder").glob("*.safetensors")), "text_encoder", ".layer.")


def source_dtype(config) -> str | None:
    """The dtype of the high-noise (or only) expert's block matrices in its local safetensors file(s), from the header
    (no data read); None for a hub id, a .pth file or anything unreadable (the plan then assumes copies)."""
    own = Path(config.model.transformer_path).expanduser() if config.model.transformer_path else None
    folder = _local_folder(config)
    if own is not None and own.is_file():
        files = [own]
    elif own is not None and own.is_dir():
        files = sorted(own.glob("*.safetensors"))
    else:
        files = sorted((folder / "transformer").glob("*.safetensors")) if folder is not None else []
    return _first_matrix_dtype(files, "transformer", ".blocks.")


def _first_matrix_dtype(files: list[Path], what: str, inside: str) -> str | None:
    """The dtype of the first 2-D weight whose name contains `inside`, from the files' headers (no data read)."""
    from modules.wan.formats.headers import read_header

    for file in files:
        try:
            tensors = read_header(file, what).tensors
        except UserError:
            return None
        for name, info in tensors.items():
            if inside in f".{name}" and name.endswith(".weight") and len(info.shape) == 2:
                return _DTYPE_NAMES.get(info.dtype)
    return None
