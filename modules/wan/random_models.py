"""WAN 2.2 transformers of the real shape with random weights, built on the meta device in the target dtype and
materialised one block at a time (no checkpoint, never a float32 copy): what speed and memory benchmarks train.

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
    first = next(module.parameters(), None)
    if first is None:
        return
    generator = torch.Generator(device=first.device).manual_seed(seed)
    for name, parameter in module.named_parameters():
        if parameter.ndim >= 2 or name.endswith("scale_shift_table"):
            parameter.normal_(0.0, 0.02, generator=generator)
        elif "norm" in name and name.endswith("weight"):
            parameter.fill_(1.0)
        else:
            parameter.zero_()


def random_transformer(
    variant_name: str,
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 0,
    tiny: dict | None = None,
    fp8: bool = False,
    host: torch.device | None = None,
    num_layers: int | None = None,
) -> WanTransformer3DModel:
    """The variant's transformer at its real shape (or at `tiny` sizes), random, in `dtype`.

    The real shape is built on the meta device and cast to `dtype` there (nothing allocated), then materialised
    one part at a time on `device` (fast random initialisation), converted to fp8 storage there when asked, and
    moved to `host` when given: the device never holds more than one block during the build, so a memory cap,
    fp8 storage or block swapping (installed by the training setup before it moves the model) can be measured at
    sizes whose float32 (or even bf16) copy would not fit the card. `num_layers`: fewer blocks of the real shape
    (the block-swap benchmark, tests)."""
    if tiny is not None:
        torch.manual_seed(seed)
        transformer = build_transformer(VARIANTS[variant_name], **tiny).to(device, dtype)
        if fp8:
            convert_to_fp8_storage(transformer)
        return transformer.to(host or device)
    config = {k: v for k, v in real_transformer_config(variant_name).items() if not k.startswith("_")}
    if num_layers is not None:
        config["num_layers"] = num_layers
    with torch.device("meta"):
        transformer = WanTransformer3DModel.from_config(config)
    _to_dtype_like_from_pretrained(transformer, dtype)
    destination = host or device
    parts = [("blocks", index, block) for index, block in enumerate(transformer.blocks)]
    parts += [(name, 0, child) for name, child in transformer.named_children() if name != "blocks"]
    for number, (name, index, part) in enumerate(parts):
        part.to_empty(device=device)
        _initialise(part, seed + number)
        if fp8 and name == "blocks":
            holder = torch.nn.Module()
            holder.blocks = torch.nn.ModuleList([part])  # convert_to_fp8_storage finds linears under blocks.N.
            convert_to_fp8_storage(holder)
        part.to(destination)
    transformer.to_empty(device=destination, recurse=False)  # the transformer's own parameters (scale_shift_table)
    _initialise_own(transformer, seed + len(parts))
    # Buffers (RoPE tables) are computed at construction; to_empty left them uninitialised.
    with torch.device(destination):
        fresh_rope = type(transformer.rope)(**_rope_arguments(transformer))
    transformer.rope = fresh_rope
    return transformer


@torch.no_grad()
def _initialise_own(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for parameter in module.parameters(recurse=False):
        values = torch.randn(parameter.shape, generator=generator) * 0.02
        parameter.copy_(values.to(parameter.dtype))


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
    # Built on the device one block at a time and kept in CPU memory: the training setup installs block swapping
    # and then moves the rest (benchmark peaks are those of training, not of the build).
    host = torch.device("cpu")
    transformer = random_transformer(variant_name, device, dtype, seed=seed, tiny=tiny, fp8=fp8, host=host)
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
