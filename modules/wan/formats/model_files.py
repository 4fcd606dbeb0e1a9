"""Full-model files of a WAN 2.2 transformer: the single file with original WAN names, and diffusers folders.

Single file: `blocks.0.self_attn.q.weight`, ... (the names of the original Wan code, no prefix: the layout of
the Wan-AI and ComfyUI single-file checkpoints, which ComfyUI loads and diffusers' `from_single_file` reads).
Diffusers folder: the base model's folder with the trained transformer subfolder(s) replaced; every other part is
hard-linked from the base (copied when the base is on another file system), so the folder stands alone and
`WanPipeline.from_pretrained` or `model.base_path` can use it. Everything is written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from modules.util.atomic import atomic_folder, save_safetensors_atomic
from modules.util.device import DTYPES
from modules.util.errors import UserError
from modules.wan.formats.key_map import diffusers_to_original_state_dict, original_to_diffusers_state_dict

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# Marks a file as written here and says which expert it is (high_noise, low_noise or single).
FORMAT_KEY, EXPERT_KEY = "wan.model_format", "wan.expert"


class ModelFileError(UserError, ValueError):
    pass


def save_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ModelFileError(f"dtype {name!r} is unknown; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu() for k, v in state_dict.items()
    }


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata() or {})
    except Exception as error:  # safetensors raises several types for missing, truncated or foreign files
        raise ModelFileError(f"{path}: not a readable .safetensors file ({type(error).__name__}: {error})") from error


# ---- single file ---------------------------------------------------------------------------------------
def save_single_file(
    state_dict: dict[str, torch.Tensor],
    path: str | Path,
    dtype: str | torch.dtype = "bfloat16",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a transformer state dict (diffusers names) as one file with the original WAN names."""
    tensors = _cast(diffusers_to_original_state_dict(state_dict), save_dtype(dtype))
    return save_safetensors_atomic(tensors, path, {"format": "pt", FORMAT_KEY: "wan_original", **(metadata or {})})


def read_single_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A single-file WAN transformer (original names, with or without a `[model.]diffusion_model.` prefix) in
    diffusers names."""
    tensors, _ = read_safetensors(Path(path))
    try:
        return original_to_diffusers_state_dict(tensors)
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{path}: not a WAN transformer single file ({error})") from None


# ---- diffusers folders ---------------------------------------------------------------------------------
def read_transformer_folder(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights (all shards) and config.json of a diffusers WanTransformer3DModel folder."""
    folder = Path(folder)
    config_path = folder / "config.json"
    shards = sorted(folder.glob("*.safetensors"))
    if not config_path.is_file() or not shards:
        raise ModelFileError(f"{folder}: expected a diffusers transformer folder (config.json and *.safetensors)")
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        state_dict.update(read_safetensors(shard)[0])
    return state_dict, json.loads(config_path.read_text(encoding="utf-8"))


def write_transformer_folder(
    state_dict: dict[str, torch.Tensor], config: dict, folder: Path, dtype: str | torch.dtype
) -> None:
    """Fill `folder` (already existing, e.g. inside an atomic_folder) with config.json and one weights file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_safetensors_atomic(_cast(state_dict, save_dtype(dtype)), folder / WEIGHTS_NAME, {"format": "pt"})


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def write_model_folder(
    base: Path,
    destination: Path,
    transformers: dict[str, tuple[dict[str, torch.Tensor], dict]],
    dtype: str | torch.dtype,
) -> Path:
    """`destination` := the base folder with each `transformers[subfolder] = (state_dict, config)` replaced.

    An existing destination is replaced only after the new folder is complete, so a crash leaves the old one or
    the new one, never a mix.
    """
    base, destination = Path(base), Path(destination)
    if not (base / "model_index.json").is_file():
        raise ModelFileError(f"{base}: not a diffusers model folder (no model_index.json)")
    building = destination.with_name(destination.name + ".new") if destination.exists() else destination
    if building.exists():
        shutil.rmtree(building)  # a complete but never swapped-in folder from an interrupted save
    with atomic_folder(building) as tmp:
        for source in sorted(p for p in base.rglob("*") if p.is_file()):
            relative = source.relative_to(base)
            if relative.parts[0] not in transformers and not relative.name.startswith("."):
                _link_or_copy(source, tmp / relative)
        for subfolder, (state_dict, config) in transformers.items():
            write_transformer_folder(state_dict, config, tmp / subfolder, dtype)
    if building != destination:
        old = destination.with_name(destination.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(destination, old)
        os.rename(building, destination)
        shutil.rmtree(old, ignore_errors=True)
    return destination
