"""Build a diffusers/transformers part from one single file, straight into the target dtype.

The module is built on the meta device (accelerate's init_empty_weights: no memory for weights), then every
weight is read from the file on its own, cast to its target dtype (through one reused scratch buffer),
dequantised if the file is fp8 "scaled" (weight * scale_weight, in place) and assigned. Peak memory is the loaded
model plus the largest tensor: no fp32 copy of the model and no state dict of the file are ever built.

The file's names are derived from the module's own names (formats/key_map.py, formats/part_keys.py), so a weight the
file lacks, an extra weight, or a shape that differs from the config is found before anything is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from modules.base.model_loader import ModelLoadError
from modules.module.fp8_linear import convert_to_fp8_storage, fp8_storage_names, quantise_fp8
from modules.wan.formats.headers import read_header
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.formats.part_keys import umt5_to_wan_t5_key, vae_diffusers_to_original_key
from modules.wan.loading.file_detection import SingleFileInfo, detect_single_file
from modules.wan.loading.weight_file import ShardedWeightFile, WeightFile

PART_CLASSES = {"transformer": WanTransformer3DModel, "vae": AutoencoderKLWan, "text_encoder": UMT5EncoderModel}
FP8_STORAGE = (torch.float8_e4m3fn, torch.float8_e5m2)


def build_empty(part: str, config: dict) -> torch.nn.Module:
    """The part's module with every weight on the meta device (non-persistent buffers are real)."""
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    if part != "text_encoder":
        with init_empty_weights():
            return PART_CLASSES[part].from_config(config)
    with init_empty_weights():
        module = UMT5EncoderModel(
            UMT5Config(**{k: v for k, v in config.items() if k not in ("architectures", "dtype")})
        )
    # encoder.embed_tokens is `shared` (as from_pretrained ties them): one tensor in the files and the model.
    # Outside init_empty_weights, which would register a fresh meta copy instead of the same parameter.
    module.encoder.embed_tokens.weight = module.shared.weight
    return module


def file_key_function(info: SingleFileInfo, config: dict) -> Callable[[str], str]:
    """diffusers/transformers name -> the name this file uses (prefix included)."""
    if info.naming in ("diffusers",):
        rename = str
    elif info.part == "transformer":
        rename = diffusers_to_original_key
    elif info.part == "vae":
        blocks, residual = config.get("num_res_blocks", 2), bool(config.get("is_residual", False))
        rename = lambda key: vae_diffusers_to_original_key(key, blocks, residual)  # noqa: E731
    else:
        rename = umt5_to_wan_t5_key
    return lambda key: info.prefix + rename(key)


def target_dtype(module: torch.nn.Module, name: str, dtype: torch.dtype, part: str) -> torch.dtype:
    """The dtype diffusers/transformers from_pretrained would give this weight, or fp8 storage for block matrices."""
    if dtype in FP8_STORAGE:
        # fp8 keeps only the big matrices of the transformer blocks (fp8_linear.py); the rest is loaded as for bf16.
        if name.startswith("blocks.") and name.endswith(".weight") and _ndim(module, name) == 2:
            return dtype
        dtype = torch.bfloat16
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    # diffusers keeps these in fp32 for fp16 and bf16; transformers (T5's "wo") only for fp16.
    half = (torch.float16, torch.bfloat16) if part != "text_encoder" else (torch.float16,)
    if dtype in half and any(m in name.split(".") for m in keep):
        return torch.float32
    return dtype


def read_weight(file: WeightFile, key: str, target: torch.dtype) -> torch.Tensor:
    """One weight in `target`, dequantised when the file is fp8 "scaled": fp8 * scale in float32, rounded once.

    A per-tensor scale is applied in place on the target-dtype copy: every fp8 e4m3 value is exact in bf16/fp16/fp32
    and the kernel multiplies by a Python scalar in float32, so the bits equal (fp8.float() * scale).to(target)
    without a float32 temporary of the whole matrix (which, freed again and again, fragments the heap).
    """
    scale_key = key[: -len("weight")] + "scale_weight" if key.endswith("weight") else None
    if scale_key not in file.shapes:
        return file.read_as(key, target)
    scale = file.read(scale_key).to(torch.float32)
    if scale.numel() == 1 and target not in FP8_STORAGE:
        return file.read_as(key, target).mul_(scale.item())
    return (file.read(key).to(torch.float32) * scale).to(target)


def read_fp8_weight(file: WeightFile, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A block matrix for fp8 storage: an fp8 e4m3 file's own bytes and scale_weight (1 if unscaled), no round trip;
    any other dtype is quantised here, from the file's own precision (scale = absmax / 448)."""
    scale_key = key[: -len("weight")] + "scale_weight"
    scale = file.read(scale_key).to(torch.float32) if scale_key in file.shapes else None
    if file.dtypes[key] == "F8_E4M3":
        return file.read(key), torch.ones((), dtype=torch.float32) if scale is None else scale
    value = file.read_temporary(key)  # quantise_fp8 writes a fresh fp8 tensor; no per-matrix copy of the source
    return quantise_fp8(value if scale is None else value.to(torch.float32) * scale)


def _ndim(module: torch.nn.Module, name: str) -> int:
    return module.get_parameter(name).dim()


def _groups(module: torch.nn.Module) -> list[list[str]]:
    """Names of each weight, tied weights (UMT5's shared / encoder.embed_tokens) grouped: one read for all."""
    groups: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return list(groups.values())


def _assign(module: torch.nn.Module, name: str, value: torch.nn.Parameter) -> None:
    owner, _, leaf = name.rpartition(".")
    module.get_submodule(owner)._parameters[leaf] = value


def plan_load(
    info: SingleFileInfo, config: dict, config_source: str
) -> tuple[torch.nn.Module, list[tuple[list[str], str]]]:
    """The empty module and, per weight (tied names together), the file key to read; refuses any misfit."""
    module = build_empty(info.part, config)
    to_file = file_key_function(info, config)
    groups = _groups(module)
    params = dict(module.named_parameters(remove_duplicate=False))
    raw_shapes = {info.prefix + k: v for k, v in info.shapes.items()}
    chosen: list[tuple[list[str], str]] = []
    missing, mismatched = [], []
    for names in groups:
        present = [to_file(n) for n in names if to_file(n) in raw_shapes]
        if not present:
            missing.append(to_file(names[0]))
            continue
        key = present[0]
        if tuple(raw_shapes[key]) != tuple(params[names[0]].shape):
            mismatched.append(f"{key} {list(raw_shapes[key])} vs {list(params[names[0]].shape)}")
        chosen.append((names, key))
    unexpected = sorted(set(raw_shapes) - {to_file(n) for names in groups for n in names})
    if missing or mismatched or unexpected:
        raise ModelLoadError(
            f"{info.path}: the {info.part} file does not fit its config ({config_source}). Found: {info.describe()}; "
            f"{len(missing)} weights missing ({', '.join(missing[:3])}), {len(mismatched)} of another shape "
            f"({'; '.join(mismatched[:3])}), {len(unexpected)} not in the model ({', '.join(unexpected[:3])}). "
            f"Expected: every weight of {type(module).__name__} with the config's shapes. "
            f"Fix: use the config of this exact model (a diffusers folder of the same model in model.base_path, or the "
            f"matching resources/model_configs file), or the file meant for the {info.part}."
        )
    return module, chosen


def check_names_and_shapes(info: SingleFileInfo, config: dict, config_source: str) -> None:
    plan_load(info, config, config_source)


def load_part_from_file(
    info: SingleFileInfo,
    config: dict,
    dtype: torch.dtype,
    *,
    config_source: str,
    file: WeightFile | None = None,
    replace_linear: Callable[[torch.nn.Linear], torch.nn.Module] | None = None,
    map_weights: bool = False,
) -> torch.nn.Module:
    """Build `info.part` with `config` and fill it from `info.path`; `config_source` names the config in errors.

    `replace_linear` (int8/nf4 storage) replaces each block linear as soon as its weight and bias are read, so at
    most one layer's weights exist in `dtype` at a time (the rest of the module is stored or still on meta).
    `map_weights`: weights kept in the file's dtype are views of its mapping (modules/module/mapped_weights.py)."""
    module, chosen = plan_load(info, config, config_source)
    pending = set(fp8_storage_names(module)) if replace_linear is not None else set()
    owned = file is None
    file = file or WeightFile(info.path, info.part, map_weights)
    try:
        scales = {}  # fp8 storage: module name -> scale_weight, for convert_to_fp8_storage
        for names, key in chosen:
            target = target_dtype(module, names[0], dtype, info.part)
            if target in FP8_STORAGE:
                value, scales[names[0].rpartition(".")[0]] = read_fp8_weight(file, key)
            else:
                value = read_weight(file, key, target)
            # Like from_pretrained: trainable unless fp8 (which cannot hold gradients); setups freeze what they need.
            param = torch.nn.Parameter(value, requires_grad=value.dtype not in FP8_STORAGE)
            for name in names:
                _assign(module, name, param)
            owner = names[0].rpartition(".")[0]
            if owner in pending and not any(p.is_meta for p in module.get_submodule(owner).parameters()):
                module.set_submodule(owner, replace_linear(module.get_submodule(owner)))
                pending.discard(owner)
    finally:
        if owned:
            file.close()
    if scales:
        convert_to_fp8_storage(module, scales)
    module.eval()
    return module


def check_file_fits(path: str | Path, config: dict) -> SingleFileInfo:
    """Detect a file and check its names and shapes against a config, reading the header only (no data)."""
    with WeightFile(path, "model") as file:
        info = detect_single_file(path, file=file)
    check_names_and_shapes(info, config, str(path))
    return info


def stores_blocks_in(files: list[Path], dtype: torch.dtype) -> bool:
    """Whether the block matrices of these safetensors files are stored in `dtype` (headers only): then a mapped
    load keeps the files' own bytes."""
    for file in files:
        for name, info in read_header(file, "transformer").tensors.items():
            if name.startswith("blocks.") and name.endswith(".weight") and len(info.shape) == 2:
                return info.torch_dtype == dtype
    return False


def load_folder_streamed(
    folder: Path,
    shards: list[Path],
    config: dict,
    dtype: torch.dtype,
    replace_linear: Callable[[torch.nn.Linear], torch.nn.Module] | None = None,
    map_weights: bool = False,
) -> torch.nn.Module:
    """A diffusers transformer folder (sharded or not) into `dtype` tensor by tensor, as a single file: the host
    peak is the stored model plus one tensor, where from_pretrained into bf16 and then quantising held the whole
    bf16 expert beside its fp8 (or int8/nf4: `replace_linear`) copy. `map_weights`: shards in the stored dtype are
    mapped, not read."""
    file = ShardedWeightFile(shards, "transformer", map_weights)
    info = SingleFileInfo(
        path=folder, part="transformer", naming="diffusers", prefix="", dtype="mixed", shapes=dict(file.shapes)
    )
    try:
        return load_part_from_file(
            info, config, dtype, config_source=str(folder / "config.json"), file=file, replace_linear=replace_linear
        )
    finally:
        file.close()
