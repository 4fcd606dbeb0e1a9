"""Names of VAE and UMT5 weights in diffusers/transformers vs. the single files users hold.

The transformer's renames live in key_map.py. Here:
- the WAN VAE in its original layout (Wan2.1_VAE.pth, wan_2.1_vae.safetensors, Wan2.2_VAE.pth, wan2.2_vae.safetensors),
  derived from the structure (stages, res blocks per stage, Wan2.1 flat vs. Wan2.2 nested lists), so that any
  size of VAE maps, the tiny test ones included;
- UMT5 in Wan-AI's own T5 layout (models_t5_umt5-xxl-enc-bf16.pth). ComfyUI's umt5_xxl files use the
  transformers names, so they need no map.
Each function maps one diffusers/transformers name to the file's name; loaders invert it over the names of
the module they build, so every weight is accounted for in both directions.
"""

from __future__ import annotations

import re

# Inside one residual block: diffusers -> original (the original is an nn.Sequential: 0 norm, 2 conv, 3 norm, 6 conv).
_VAE_RESNET = {
    "norm1": "residual.0",
    "conv1": "residual.2",
    "norm2": "residual.3",
    "conv2": "residual.6",
    "conv_shortcut": "shortcut",
}
_VAE_TOP = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
_VAE_SIDE = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_VAE_RESNET[head]}.{tail}" if head in _VAE_RESNET else rest


def vae_diffusers_to_original_key(key: str, num_res_blocks: int, is_residual: bool) -> str:
    """`decoder.up_blocks.1.resnets.0.conv1.weight` -> `decoder.upsamples.4.residual.2.weight`.

    (Example for Wan2.1, 2 res blocks.)
    """
    top, _, rest = key.partition(".")
    if top in _VAE_TOP:
        return f"{_VAE_TOP[top]}.{rest}"
    side, _, rest = rest.partition(".")
    if side in _VAE_SIDE:
        return f"{top}.{_VAE_SIDE[side]}.{rest}"
    if side == "mid_block":
        kind, index, tail = rest.split(".", 2)
        # The original middle is Sequential(resblock, attention, resblock).
        return (
            f"{top}.middle.{2 * int(index) if kind == 'resnets' else 1}.{_resnet(tail) if kind == 'resnets' else tail}"
        )
    if side not in ("down_blocks", "up_blocks"):
        raise KeyError(f"{key!r}: not a weight of AutoencoderKLWan")
    stage, _, rest = rest.partition(".")
    outer = "downsamples" if top == "encoder" else "upsamples"
    if top == "encoder" and not is_residual:
        return f"encoder.downsamples.{stage}.{_resnet(rest)}"  # Wan2.1 encoder: the same flat list in both
    kind, _, tail = rest.partition(".")
    per_stage = num_res_blocks + (1 if top == "decoder" else 0)  # the decoder has one extra res block per stage
    if kind == "resnets":
        index, _, tail = tail.partition(".")
        inner, tail = int(index), _resnet(tail)
    elif kind in ("downsampler", "upsampler"):
        inner = per_stage
    elif kind == "upsamplers":
        inner, tail = per_stage, tail.partition(".")[2]  # upsamplers.0.<tail>
    else:
        raise KeyError(f"{key!r}: not a weight of AutoencoderKLWan")
    if is_residual:  # Wan2.2: a list of stages, each a list of its res blocks and then its resample
        return f"{top}.{outer}.{stage}.{outer}.{inner}.{tail}"
    # Wan2.1 decoder: one flat list, each stage being its res blocks and then its upsampler.
    return f"decoder.upsamples.{int(stage) * (per_stage + 1) + inner}.{tail}"


# UMT5 in Wan-AI's T5 code: transformers name -> original, inside `encoder.block.N.`.
_T5_BLOCK = {
    "layer.0.layer_norm": "norm1",
    "layer.0.SelfAttention.q": "attn.q",
    "layer.0.SelfAttention.k": "attn.k",
    "layer.0.SelfAttention.v": "attn.v",
    "layer.0.SelfAttention.o": "attn.o",
    "layer.0.SelfAttention.relative_attention_bias": "pos_embedding.embedding",  # UMT5: one per block
    "layer.1.layer_norm": "norm2",
    "layer.1.DenseReluDense.wi_0": "ffn.gate.0",
    "layer.1.DenseReluDense.wi_1": "ffn.fc1",
    "layer.1.DenseReluDense.wo": "ffn.fc2",
}
_T5_TOP = {"shared": "token_embedding", "encoder.embed_tokens": "token_embedding", "encoder.final_layer_norm": "norm"}
_T5_BLOCK_KEY = re.compile(r"^encoder\.block\.(\d+)\.(.+)\.(weight|bias)$")


def umt5_to_wan_t5_key(key: str) -> str:
    """`encoder.block.3.layer.1.DenseReluDense.wi_0.weight` -> `blocks.3.ffn.gate.0.weight`."""
    match = _T5_BLOCK_KEY.match(key)
    if match and match.group(2) in _T5_BLOCK:
        return f"blocks.{match.group(1)}.{_T5_BLOCK[match.group(2)]}.{match.group(3)}"
    module, _, leaf = key.rpartition(".")
    if module in _T5_TOP:
        return f"{_T5_TOP[module]}.{leaf}"
    raise KeyError(f"{key!r}: not a weight of UMT5EncoderModel")
