"""LoRA files in the kohya / musubi-tuner key layout, read and written by renaming to and from ComfyUI's layout.

kohya layout: `lora_unet_blocks_0_self_attn_q.lora_down.weight` / `.lora_up.weight` / `.alpha`, and for LyCORIS
types the same module name with `.hada_w1_a`, `.lokr_w1`, ... and DoRA's `.dora_scale`. The tensors are exactly
ComfyUI-layout ones (`diffusion_model.blocks.0.self_attn.q.lora_A.weight`, ...): only the module part of each key
differs (formats/key_map.py's kohya rule) and plain LoRA matrices are called lora_down / lora_up. So reading a
kohya file is a rename followed by the ComfyUI reader, and writing one is the ComfyUI writer followed by a rename.
ComfyUI's loader and diffusers' WanLoraLoaderMixin both accept this layout.
"""

from __future__ import annotations

from typing import TypeVar

from modules.wan.formats.key_map import KOHYA_PREFIX, kohya_to_original_module, original_module_to_kohya

T = TypeVar("T")
COMFYUI_PREFIX = "diffusion_model."
# ComfyUI-layout tensor names -> kohya ones; everything else (alpha, dora_scale, LoHa/LoKr parts) keeps its name.
_TO_KOHYA_PART = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}
_FROM_KOHYA_PART = {v: k for k, v in _TO_KOHYA_PART.items()}


def is_kohya_layout(keys) -> bool:
    keys = list(keys)
    return bool(keys) and all(k.startswith(KOHYA_PREFIX) for k in keys)


def _split(key: str) -> tuple[str, str]:
    """(module, tensor part) of a LoRA key: the part is what follows the module (`lora_A.weight`, `alpha`, ...)."""
    for part in (*_TO_KOHYA_PART, *_FROM_KOHYA_PART):
        if key.endswith("." + part):
            return key[: -len(part) - 1], part
    module, _, part = key.rpartition(".")
    return module, part


def _renamed(tensors: dict[str, T], module_name, parts: dict[str, str]) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, value in tensors.items():
        module, part = _split(key)
        out[f"{module_name(module)}.{parts.get(part, part)}"] = value
    return out


def kohya_to_comfyui(tensors: dict[str, T]) -> dict[str, T]:
    """kohya keys -> ComfyUI keys (values passed through); KeyError naming a key no WAN module fits."""
    return _renamed(tensors, lambda module: COMFYUI_PREFIX + kohya_to_original_module(module), _FROM_KOHYA_PART)


def comfyui_to_kohya(tensors: dict[str, T]) -> dict[str, T]:
    """ComfyUI keys -> kohya keys (values passed through)."""
    return _renamed(tensors, original_module_to_kohya, _TO_KOHYA_PART)
