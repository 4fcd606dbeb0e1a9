"""WAN 2.2 transformers of the real shape with random weights, built on the meta device and materialised on the
target device directly (no checkpoint, no host copy): what speed and memory benchmarks train.

The tiny encoders (modules/wan/tiny_models.py) stand in for UMT5 and the VAE, which a training step never runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from modules.module.fp8_linear import convert_to_fp8_storage
from modules.util.resources import MODEL_CONFIGS_DIR
from modules.wan.model import WanModel
from modules.wan.tiny_models import build_tiny_pipeline, build_transformer
from modules.wan.variants import VARIANTS


def real_transformer_config(variant_name: str) -> dict:
    return json.loads((MODEL_CONFIGS_DIR / f"transformer_{variant_name}.json").read_text())


@torch.no_grad()
def _initialise(module: torch.nn.Module, seed: int) -> None:
    """Small random weights (std 0.02, norms at 1, biases at 0) so the loss is finite at any depth."""
    generator = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    for name, parameter in module.named_parameters():
        if parameter.ndim >= 2 or name.endswith("scale_shift_table"):
            parameter.normal_(0.0, 0.02, generator=generator)
        elif "norm" in name and name.endswith("weight"):
            parameter.fill_(1.0)
        else:
            parameter.zero_()


def random_transformer(
    variant_name: str, device: torch.device, dtype: torch.dtype, seed: int = 0, tiny: dict | None = None
) -> WanTransformer3DModel:
    """The variant's transformer at its real shape (or at `tiny` sizes), random, in `dtype` on `device`."""
    if tiny is not None:
        torch.manual_seed(seed)
        return build_transformer(VARIANTS[variant_name], **tiny).to(device, dtype)
    config = {k: v for k, v in real_transformer_config(variant_name).items() if not k.startswith("_")}
    with torch.device("meta"):
        transformer = WanTransformer3DModel.from_config(config)
    transformer.to_empty(device=device)
    _initialise(transformer, seed)
    _to_dtype_like_from_pretrained(transformer, dtype)
    # Buffers (RoPE tables) are computed at construction; to_empty left them uninitialised.
    with torch.device(device):
        fresh_rope = type(transformer.rope)(**_rope_arguments(transformer))
    transformer.rope = fresh_rope
    return transformer


def _to_dtype_like_from_pretrained(transformer: WanTransformer3DModel, dtype: torch.dtype) -> None:
    """Cast as diffusers' from_pretrained(torch_dtype=...) does: the modules the class keeps in float32 stay so."""
    keep = getattr(transformer, "_keep_in_fp32_modules", None) or []
    for name, module in transformer.named_modules():
        parts = name.split(".")
        if not any(k in parts for k in keep):
            for parameter in module.parameters(recurse=False):
                parameter.data = parameter.data.to(dtype)


def _rope_arguments(transformer: WanTransformer3DModel) -> dict:
    config = transformer.config
    return {
        "attention_head_dim": config.attention_head_dim,
        "patch_size": config.patch_size,
        "max_seq_len": config.rope_max_seq_len,
    }


def benchmark_model(
    variant_name: str,
    device: torch.device,
    dtype: torch.dtype,
    fp8: bool = False,
    tiny: dict | None = None,
    seed: int = 0,
) -> WanModel:
    """A WanModel whose trained expert (the only one, or the high-noise one of A14B) has the real shape and random
    weights; tokenizer, UMT5, VAE and the A14B low-noise expert are tiny (a benchmark trains one expert)."""
    variant = VARIANTS[variant_name]
    pipe = build_tiny_pipeline(variant_name, seed=seed)
    transformer = random_transformer(variant_name, device, dtype, seed=seed, tiny=tiny)
    if fp8:
        convert_to_fp8_storage(transformer)
    return WanModel(
        variant=variant,
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=transformer,
        transformer_2=pipe.transformer_2,
        scheduler=pipe.scheduler,
        model_path=Path(f"<random {variant_name}>"),
    )
