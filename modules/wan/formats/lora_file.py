"""LoRA files for WAN 2.2: the ComfyUI layout (default), the diffusers and the kohya layouts, written atomically.

ComfyUI matches LoRA keys against its own model's weight names, which are the original Wan names, so the
default file uses those: `diffusion_model.blocks.0.self_attn.q.lora_A.weight` plus a per-module `.alpha`.
diffusers' WanLoraLoaderMixin reads that layout too. The diffusers layout
(`transformer.blocks.0.attn1.to_q.lora_A.weight`) cannot carry `.alpha` keys (diffusers rejects keys without
"lora"), so rank and alpha go into the `lora_adapter_metadata` JSON that diffusers' own saver writes.
The kohya / musubi-tuner layout (`lora_unet_blocks_0_self_attn_q.lora_down.weight`) is ComfyUI's renamed
(formats/kohya_keys.py). See docs/lora_format.md. Also the file names per expert and the training metadata every
saver writes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import safe_open

from modules.util.atomic import save_safetensors_atomic
from modules.util.device import DTYPES
from modules.util.errors import UserError
from modules.util.resources import MODEL_SPECS_DIR
from modules.wan.formats.adapter_settings import settings_for_saving
from modules.wan.formats.key_map import ORIGINAL_PREFIXES, diffusers_to_original_key, original_to_diffusers_key
from modules.wan.formats.kohya_keys import comfyui_to_kohya, is_kohya_layout, kohya_to_comfyui
from modules.wan.formats.lycoris_keys import to_comfyui_variant_state_dict

LORA_FORMATS = ("comfyui", "diffusers", "kohya")
# Layouts that carry per-module alphas, DoRA magnitudes and LoHa/LoKr tensors (diffusers' own layout does not).
FULL_LAYOUTS = ("comfyui", "kohya")
COMFYUI_PREFIX = "diffusion_model."
DIFFUSERS_PREFIX = "transformer."
# The safetensors metadata key diffusers reads LoraConfig kwargs from (diffusers.loaders.lora_base).
DIFFUSERS_ADAPTER_METADATA_KEY = "lora_adapter_metadata"
# Rank and alpha under the names kohya-style tools and model sites read.
RANK_KEY, ALPHA_KEY, FORMAT_KEY = "ss_network_dim", "ss_network_alpha", "wan.lora_format"
LORA_TYPE_KEY = "wan.lora_type"  # lora, loha or lokr
DORA_SUFFIX = ".dora_scale"

_PEFT_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")
# Down/up names other tools use for the same two matrices.
_ORIGINAL_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_down|lora_up)\.weight$")
_PART = {"lora_A": "lora_A", "lora_down": "lora_A", "lora_B": "lora_B", "lora_up": "lora_B"}


class LoraFileError(UserError, ValueError):
    pass


# ---- metadata ----------------------------------------------------------------------------------------
def model_spec(variant_name: str) -> dict[str, str]:
    """resources/model_specs/<variant>-lora.json: the modelspec.* entries of a LoRA for that variant."""
    path = MODEL_SPECS_DIR / f"{variant_name}-lora.json"
    if not path.is_file():
        known = sorted(p.name.removesuffix("-lora.json") for p in MODEL_SPECS_DIR.glob("*-lora.json"))
        raise LoraFileError(f"{path}: no model spec for variant {variant_name!r} (known: {', '.join(known)})")
    return {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def _as_metadata_value(value: object) -> str:
    # safetensors metadata holds strings only; anything else is stored as its JSON text.
    return value if isinstance(value, str) else json.dumps(value)


# ---- layouts -----------------------------------------------------------------------------------------
def lora_modules(peft_state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Diffusers module name -> (lora_A, lora_B); raises if a key is not a LoRA matrix or a pair is incomplete."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in peft_state_dict.items():
        match = _PEFT_KEY.match(key)
        if not match:
            raise LoraFileError(f"{key!r} is not a LoRA key (<module>.lora_A.weight / <module>.lora_B.weight)")
        parts.setdefault(match["module"], {})[match["part"]] = value
    incomplete = sorted(m for m, p in parts.items() if len(p) != 2)
    if incomplete:
        raise LoraFileError(f"LoRA modules without both lora_A and lora_B: {incomplete[:5]}")
    return {m: (p["lora_A"], p["lora_B"]) for m, p in parts.items()}


def split_dora(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA matrices, DoRA magnitudes `<module>.dora_scale`) of a state dict (modules/module/dora.py)."""
    dora = {k: v for k, v in state_dict.items() if k.endswith(DORA_SUFFIX)}
    return {k: v for k, v in state_dict.items() if k not in dora}, dora


def to_comfyui_state_dict(
    peft_state_dict: dict[str, torch.Tensor], alpha: float, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    peft_state_dict, dora = split_dora(peft_state_dict)
    for key, value in dora.items():  # (1, in): the orientation ComfyUI's weight_decompose reads
        module = key[: -len(DORA_SUFFIX)]
        out[f"{COMFYUI_PREFIX}{diffusers_to_original_key(module)}{DORA_SUFFIX}"] = value.detach().to("cpu", dtype)
    for module, (down, up) in lora_modules(peft_state_dict).items():
        name = COMFYUI_PREFIX + diffusers_to_original_key(module)
        out[f"{name}.lora_A.weight"] = down.detach().to("cpu", dtype)
        out[f"{name}.lora_B.weight"] = up.detach().to("cpu", dtype)
        # A 0-dim float32 scalar: readers do `.item()`, and float32 holds any alpha a user types.
        out[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
    return out


def to_diffusers_state_dict(
    peft_state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for module, (down, up) in lora_modules(peft_state_dict).items():
        out[f"{DIFFUSERS_PREFIX}{module}.lora_A.weight"] = down.detach().to("cpu", dtype)
        out[f"{DIFFUSERS_PREFIX}{module}.lora_B.weight"] = up.detach().to("cpu", dtype)
    return out


def diffusers_adapter_metadata(modules: list[str], rank: int, alpha: float) -> str:
    """The LoraConfig kwargs diffusers' loader builds the adapter from (keys prefixed by the component)."""
    config = {"r": rank, "lora_alpha": alpha, "target_modules": sorted(modules)}
    return json.dumps({f"{DIFFUSERS_PREFIX}{k}": v for k, v in config.items()}, indent=2, sort_keys=True)


# ---- save / load -------------------------------------------------------------------------------------
def save_lora_file(
    peft_state_dict: dict[str, torch.Tensor],
    path: str | Path,
    *,
    format: str = "comfyui",
    rank: int,
    alpha: float,
    metadata: dict[str, str] | None = None,
    variant: str | None = None,
    dtype: str | torch.dtype = "float32",
    kind: str = "lora",
    factor: int = -1,
) -> Path:
    """Write one LoRA file. `metadata` (training settings) is merged over the variant's model spec.
    `kind` loha / lokr: peft's LoHa/LoKr tensors, written in ComfyUI's layout (formats/lycoris_keys.py).
    Every setting that rebuilds the adapter (`factor` is LoKr's) goes into `wan.adapter` (adapter_settings.py)."""
    adapter = settings_for_saving(peft_state_dict, kind, rank, alpha, factor).metadata()
    if format not in LORA_FORMATS:
        raise LoraFileError(f"LoRA format {format!r} is unknown; choose one of {', '.join(LORA_FORMATS)}")
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if kind != "lora":
        if format not in FULL_LAYOUTS:
            raise LoraFileError(
                f"output.lora_format {format!r}: diffusers cannot load {kind} adapters; "
                "use comfyui or kohya (docs/lora_format.md)"
            )
        tensors = to_comfyui_variant_state_dict(peft_state_dict, kind, rank, alpha, torch_dtype)
        if format == "kohya":
            tensors = comfyui_to_kohya(tensors)
        file_metadata = {"format": "pt", **(model_spec(variant) if variant else {})}
        file_metadata["modelspec.date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        file_metadata.update({k: _as_metadata_value(v) for k, v in (metadata or {}).items()})
        file_metadata.update(
            {RANK_KEY: str(rank), ALPHA_KEY: repr(float(alpha)), FORMAT_KEY: format, LORA_TYPE_KEY: kind, **adapter}
        )
        return save_safetensors_atomic(tensors, path, file_metadata)
    if split_dora(peft_state_dict)[1] and format not in FULL_LAYOUTS:
        raise LoraFileError("DoRA magnitudes (dora_scale) are written in the comfyui and kohya layouts only; use one")
    modules = lora_modules(split_dora(peft_state_dict)[0])
    wrong_rank = sorted(m for m, (down, _) in modules.items() if down.shape[0] != rank)
    if wrong_rank:
        raise LoraFileError(f"rank={rank} but these modules have another rank: {wrong_rank[:5]}")

    file_metadata: dict[str, str] = {"format": "pt"}
    if variant:
        file_metadata.update(model_spec(variant))
    file_metadata["modelspec.date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    file_metadata.update({k: _as_metadata_value(v) for k, v in (metadata or {}).items()})
    file_metadata.update({RANK_KEY: str(rank), ALPHA_KEY: repr(float(alpha)), FORMAT_KEY: format, **adapter})

    if format in FULL_LAYOUTS:
        tensors = to_comfyui_state_dict(peft_state_dict, alpha, torch_dtype)
        if format == "kohya":
            tensors = comfyui_to_kohya(tensors)
        # Never diffusers' adapter metadata here: its loader would apply alpha on top of the `.alpha` keys.
        file_metadata.pop(DIFFUSERS_ADAPTER_METADATA_KEY, None)
    else:
        tensors = to_diffusers_state_dict(peft_state_dict, torch_dtype)
        file_metadata["modelspec.implementation"] = "diffusers"
        file_metadata[DIFFUSERS_ADAPTER_METADATA_KEY] = diffusers_adapter_metadata(list(modules), rank, alpha)
    return save_safetensors_atomic(tensors, path, file_metadata)


def load_lora_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a ComfyUI-, kohya- or diffusers-layout LoRA back to peft names (float32) and its metadata.

    The returned metadata always holds the rank (ss_network_dim), alpha (ss_network_alpha) and layout
    (wan.lora_format) as read from the weights themselves, so a resume or conversion can rebuild the adapter.
    """
    with safe_open(str(path), framework="pt") as file:
        metadata = dict(file.metadata() or {})
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    if not tensors:
        raise LoraFileError(f"{path}: the file holds no tensors")
    if all(k.startswith(DIFFUSERS_PREFIX) for k in tensors):
        state_dict, alphas = _read_diffusers(tensors, metadata)
        metadata[FORMAT_KEY] = "diffusers"
    elif is_kohya_layout(tensors):
        state_dict, alphas = _read_comfyui(kohya_tensors_as_comfyui(path, tensors))
        metadata[FORMAT_KEY] = "kohya"
    elif all(k.startswith(ORIGINAL_PREFIXES) for k in tensors):
        state_dict, alphas = _read_comfyui(tensors)
        metadata[FORMAT_KEY] = "comfyui"
    else:
        raise LoraFileError(
            f"{path}: keys must all start with '{DIFFUSERS_PREFIX}' (diffusers), '{COMFYUI_PREFIX}' (ComfyUI) or "
            "'lora_unet_' (kohya); "
            f"found e.g. {next(iter(tensors))!r}"
        )
    ranks = {down.shape[0] for down, _ in lora_modules(split_dora(state_dict)[0]).values()}
    if len(ranks) != 1 or len(set(alphas)) > 1:
        raise LoraFileError(
            f"{path}: modules differ in rank {sorted(ranks)} or alpha {sorted(set(alphas))}; "
            "one adapter needs one rank and one alpha"
        )
    rank = ranks.pop()
    metadata[RANK_KEY] = str(rank)
    metadata[ALPHA_KEY] = repr(float(alphas[0])) if alphas else repr(float(rank))  # no alpha: scale 1
    return state_dict, metadata


def kohya_tensors_as_comfyui(path: str | Path, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A kohya-layout file's tensors under ComfyUI names; a key naming no WAN module is refused naming the file."""
    try:
        return kohya_to_comfyui(tensors)
    except KeyError as error:
        raise LoraFileError(
            f"{path}: {error.args[0]} Expected kohya names of WAN 2.2 modules (lora_unet_blocks_N_self_attn_q, ...). "
            "Fix: use a LoRA trained for WAN 2.2"
        ) from None


def _read_comfyui(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[float]]:
    state_dict: dict[str, torch.Tensor] = {}
    alphas: list[float] = []
    for key, value in tensors.items():
        if key.endswith(".alpha"):
            alphas.append(float(value.item()))
            continue
        if key.endswith(DORA_SUFFIX):
            state_dict[original_to_diffusers_key(key[: -len(DORA_SUFFIX)]) + DORA_SUFFIX] = value.float()
            continue
        match = _ORIGINAL_KEY.match(key)
        if not match:
            raise LoraFileError(f"{key!r} is neither a LoRA matrix nor an alpha")
        module = original_to_diffusers_key(match["module"])
        state_dict[f"{module}.{_PART[match['part']]}.weight"] = value.float()
    return state_dict, alphas


def _read_diffusers(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[float]]:
    state_dict = {k[len(DIFFUSERS_PREFIX) :]: v.float() for k, v in tensors.items()}
    lora_modules(state_dict)  # validates the keys
    adapter = json.loads(metadata.get(DIFFUSERS_ADAPTER_METADATA_KEY) or "{}")
    alpha = adapter.get(f"{DIFFUSERS_PREFIX}lora_alpha")
    return state_dict, [] if alpha is None else [float(alpha)]


# ---- file names and metadata of what a training run writes ---------------------------------------------
EXPERT_FILE_SUFFIX = {"transformer": "high_noise", "transformer_2": "low_noise"}


def expert_paths(destination: Path, experts: list[str], two_expert_model: bool = True) -> dict[str, Path]:
    """A one-expert model (TI2V-5B): `destination` itself. A14B: `<stem>_high_noise` / `<stem>_low_noise`
    beside it, even when only one expert trained, so a file never leaves its expert in doubt."""
    if not two_expert_model:
        return {experts[0]: destination}
    return {
        e: destination.with_name(f"{destination.stem}_{EXPERT_FILE_SUFFIX[e]}{destination.suffix}") for e in experts
    }


def training_metadata(config, model) -> dict[str, str]:
    """The settings that shaped the trained file, for whoever loads it later (all values strings); with
    `wan.base_loras` the LoRAs merged into the base it was trained on (files, SHA-256, multipliers)."""
    training, data, lora = config.training, config.data, config.lora
    values = {
        "wan.base_model": config.model.base_path,
        "wan.lora_dropout": lora.dropout,
        "wan.lora_layer_filter": lora.layer_filter,
        "wan.learning_rate": training.learning_rate,
        "wan.max_steps": training.max_steps,
        "wan.batch_size": training.batch_size,
        "wan.seed": training.seed,
        "wan.train_dtype": training.train_dtype,
        "wan.timestep_distribution": training.timestep_distribution,
        "wan.flow_shift": training.flow_shift,
        "wan.resolution": data.resolution,
        "wan.frames": data.frames,
        "wan.experts_train": config.experts.train,
        "wan.experts_boundary_ratio": config.experts.boundary_ratio,
        "wan.experts_shared_lora": config.experts.shared_lora,
        "wan.image_to_video_ratio": training.image_to_video_ratio,
    }
    if model.base_weights_identity:
        values["wan.base_loras"] = model.base_weights_identity
    return {k: _as_metadata_value(v) for k, v in values.items()}
