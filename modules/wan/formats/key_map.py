"""Names of WanTransformer3DModel weights in diffusers vs. the original Wan code (what ComfyUI and the
single-file checkpoints use). Pure rename tables and functions; nothing here touches tensors.

Names are mapped by whole dotted components, longest table entry first, so the same functions work for a
module name (`blocks.0.attn1.to_q`), a parameter key (`blocks.0.attn1.to_q.weight`) and a LoRA key
(`blocks.0.attn1.to_q.lora_A.weight`): whatever follows the matched module path is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

# Inside `blocks.N.`: diffusers -> original. Note the norm swap: diffusers' norm2 is the (affine)
# cross-attention norm, which the original code calls norm3; the two non-affine norms have no weights.
_BLOCK_TABLE: dict[str, str] = {
    "scale_shift_table": "modulation",
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn1.norm_q": "self_attn.norm_q",
    "attn1.norm_k": "self_attn.norm_k",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.norm_q": "cross_attn.norm_q",
    "attn2.norm_k": "cross_attn.norm_k",
    # Image cross-attention of Wan2.1-style I2V checkpoints (Wan 2.2 has none; kept so such files convert).
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "attn2.norm_added_k": "cross_attn.norm_k_img",
    "norm1": "norm1",
    "norm2": "norm3",
    "norm3": "norm2",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}

# Outside the blocks: diffusers -> original.
_TOP_TABLE: dict[str, str] = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
    "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
    "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
    "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
    "norm_out": "head.norm",
    "proj_out": "head.head",
    "scale_shift_table": "head.modulation",
}

# Prefixes that single-file checkpoints and ComfyUI LoRAs put before the original names.
ORIGINAL_PREFIXES: tuple[str, ...] = ("model.diffusion_model.", "diffusion_model.")

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _invert(table: dict[str, str]) -> dict[str, str]:
    inverse = {v: k for k, v in table.items()}
    assert len(inverse) == len(table), "rename table is not one-to-one"
    return inverse


_BLOCK_TABLE_INV = _invert(_BLOCK_TABLE)
_TOP_TABLE_INV = _invert(_TOP_TABLE)


def _rename(name: str, table: Mapping[str, str]) -> str | None:
    """Replace the longest table entry that is `name` itself or a dotted prefix of it; None if none is."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in table:
            return ".".join([table[head], *parts[cut:]])
    return None


def _convert(name: str, block_table: Mapping[str, str], top_table: Mapping[str, str], direction: str) -> str:
    match = _BLOCK.match(name)
    if match:
        inner = _rename(match.group(2), block_table)
        renamed = None if inner is None else f"blocks.{match.group(1)}.{inner}"
    else:
        renamed = _rename(name, top_table)
    if renamed is None:
        raise KeyError(f"{name!r}: no {direction} name known for this WanTransformer3DModel weight or module")
    return renamed


def strip_original_prefix(key: str) -> str:
    """`model.diffusion_model.x` / `diffusion_model.x` -> `x` (other keys unchanged)."""
    for prefix in ORIGINAL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def diffusers_to_original_key(key: str) -> str:
    """`blocks.0.attn1.to_q.weight` -> `blocks.0.self_attn.q.weight`; raises KeyError for unknown names."""
    return _convert(key, _BLOCK_TABLE, _TOP_TABLE, "original")


def original_to_diffusers_key(key: str) -> str:
    """`[model.]diffusion_model.blocks.0.self_attn.q.weight` -> `blocks.0.attn1.to_q.weight`; KeyError if unknown."""
    return _convert(strip_original_prefix(key), _BLOCK_TABLE_INV, _TOP_TABLE_INV, "diffusers")


def _convert_dict(state_dict: Mapping[str, T], convert) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, value in state_dict.items():
        new_key = convert(key)
        if new_key in out:
            raise ValueError(f"two keys map to {new_key!r}; the state dict mixes naming schemes")
        out[new_key] = value
    return out


def diffusers_to_original_state_dict(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename every key (values are passed through untouched, not copied)."""
    return _convert_dict(state_dict, diffusers_to_original_key)


def original_to_diffusers_state_dict(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename every key, dropping a `model.diffusion_model.` / `diffusion_model.` prefix."""
    return _convert_dict(state_dict, original_to_diffusers_key)


# ---- the kohya / musubi-tuner layout ---------------------------------------------------------------------------
# Their published rule names a LoRA module "lora_unet_" + the original module path with every "." replaced by "_"
# (`blocks.0.self_attn.q` -> `lora_unet_blocks_0_self_attn_q`). Underscores inside names (self_attn, norm_q) make
# that rule lossy, so the way back looks the name up among the original module names these tables know.
KOHYA_PREFIX = "lora_unet_"
_KOHYA_BLOCK = re.compile(r"^blocks_(\d+)_(.+)$")
_KOHYA_BLOCK_NAMES = {name.replace(".", "_"): name for name in _BLOCK_TABLE.values()}
_KOHYA_TOP_NAMES = {name.replace(".", "_"): name for name in _TOP_TABLE.values()}


def original_module_to_kohya(module: str) -> str:
    """`[diffusion_model.]blocks.0.self_attn.q` (an original module path) -> `lora_unet_blocks_0_self_attn_q`."""
    return KOHYA_PREFIX + strip_original_prefix(module).replace(".", "_")


def kohya_to_original_module(name: str) -> str:
    """`lora_unet_blocks_0_self_attn_q` -> `blocks.0.self_attn.q`; KeyError for a name no WAN module has."""
    flat = name.removeprefix(KOHYA_PREFIX)
    match = _KOHYA_BLOCK.match(flat)
    if match and match.group(2) in _KOHYA_BLOCK_NAMES:
        return f"blocks.{match.group(1)}.{_KOHYA_BLOCK_NAMES[match.group(2)]}"
    if flat in _KOHYA_TOP_NAMES:
        return _KOHYA_TOP_NAMES[flat]
    raise KeyError(f"{name!r}: no WanTransformer3DModel module has this kohya name")
