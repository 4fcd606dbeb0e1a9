"""What the benchmarks (modules/benchmark/runner.py, reached through modules/registry.py) ask of WAN 2.2: the
latents a clip size gives, two facts of the transformer's inputs, and a model whose trained expert has the real
shape with random weights (modules/wan/random_models.py).
"""

from __future__ import annotations

import torch

from modules.util.errors import ConfigError
from modules.wan.model import WanModel
from modules.wan.random_models import benchmark_model as _random_benchmark_model
from modules.wan.variants import VARIANTS


def latent_shape(config, height: int, width: int) -> tuple[int, int, int, int]:
    """(channels, frames, height, width) of one sample's latents, as the VAE would give for the clip size."""
    variant = VARIANTS[config.model.variant]
    if height % variant.pixel_multiple or width % variant.pixel_multiple:
        raise ConfigError(
            f"clip size {width}x{height}: {variant.name} needs both sides a multiple of {variant.pixel_multiple} "
            "pixels (VAE stride x patch). Fix: pass --width/--height that are, e.g. 832x480"
        )
    stride = variant.vae_stride_spatial
    return variant.latent_channels, variant.latent_frames(config.data.frames), height // stride, width // stride


def expands_timesteps(config) -> bool:
    """Whether the transformer takes a timestep per latent token (TI2V-5B) instead of one per sample."""
    return VARIANTS[config.model.variant].expand_timesteps


def conditions_on_image(config) -> bool:
    """Whether the transformer's input carries image-conditioning channels (I2V-A14B)."""
    return VARIANTS[config.model.variant].image_conditioning == "channel_concat"


def benchmark_model(config, device: torch.device, dtype: torch.dtype, fp8: bool, tiny: dict | None) -> WanModel:
    return _random_benchmark_model(config.model.variant, device, dtype, fp8=fp8, tiny=tiny)


# ---- single A14B-shaped experts for the GPU acceptance stages (modules/benchmark/acceptance_checks.py) ----------
ACCEPTANCE_VARIANT = "T2V-A14B"


def tiny_expert(**shape) -> torch.nn.Module:
    """A tiny A14B-class expert (modules/wan/tiny_models.py), `shape` overriding its sizes."""
    from modules.wan.tiny_models import build_transformer

    return build_transformer(VARIANTS[ACCEPTANCE_VARIANT], **shape)


def tiny_text_dim() -> int:
    from modules.wan.tiny_models import TEXT_DIM

    return TEXT_DIM


def real_shaped_expert(device: torch.device, dtype: torch.dtype, num_layers: int, host: torch.device):
    """`num_layers` blocks of the real A14B expert's shape with random weights (modules/wan/random_models.py)."""
    from modules.wan.random_models import random_transformer

    return random_transformer(ACCEPTANCE_VARIANT, device, dtype, num_layers=num_layers, host=host)
