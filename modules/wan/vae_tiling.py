"""memory.vae_tiling: encode (caching) and decode (samples) in overlapping spatial tiles, through diffusers'
AutoencoderKLWan tiling, where the untiled pass would not fit the GPU.

'auto' asks the memory planner (modules/planning.py), with the loaded model's facts, whether the untiled VAE
pass fits the card found (modules/util/device.py gpu_capacity_gib, which WAN_TRAINER_PRETEND_GPU_GIB can set on a
CPU machine); without a GPU it stays off (there is no card to fit). Tiled latents differ from untiled ones near tile
seams (docs/presets.md states by how much), so the cache key of a tiled encode names the tiling.
"""

from __future__ import annotations

import logging

import torch

from modules.util.device import gpu_capacity_gib

log = logging.getLogger("wan_trainer")

# diffusers' defaults for AutoencoderKLWan: 256 px tiles every 192 px (64 px of overlap, blended).
TILE = {
    "tile_sample_min_height": 256,
    "tile_sample_min_width": 256,
    "tile_sample_stride_height": 192,
    "tile_sample_stride_width": 192,
}


def vae_tiling_wanted(config, vram_gib: float | None, facts=None) -> bool:
    """`facts`: the loaded model's (WanModel.memory_facts()); None reads them from the config's sources."""
    setting = getattr(getattr(config, "memory", None), "vae_tiling", "auto")
    if setting != "auto":
        return setting == "on"
    if vram_gib is None:
        return False
    from modules.memory.plan import build_plan
    from modules.wan.memory_facts import memory_facts

    return build_plan(config, vram_gib, facts if facts is not None else memory_facts(config)).vae_tiled


def apply_vae_tiling(vae, on: bool, tile: dict | None = None) -> None:
    if on:
        vae.enable_tiling(**(tile or TILE))
    else:
        vae.disable_tiling()


def configure_vae_tiling(model, config, device: torch.device) -> bool:
    """Set the model's VAE tiling for this run (caching now, sample decoding later); returns whether it is on."""
    vram = gpu_capacity_gib(device)
    # The caching phase's model holds no transformer (it loads after caching): its facts come from the config's
    # sources (headers and configs only), as planning reads them.
    loaded = vram is not None and getattr(model, "transformer", None) is not None
    on = vae_tiling_wanted(config, vram, model.memory_facts() if loaded else None)
    # On every load of the VAE (it is read on first use and released between phases: encoder_parts.py).
    model.after_encoder_load("vae", "tiling", lambda vae: apply_vae_tiling(vae, on))
    if on:
        log.info("VAE tiling on (memory.vae_tiling=%s)", getattr(config.memory, "vae_tiling", "auto"))
    return on


def tiling_identity(vae) -> str:
    """What the cache key adds for a tiled encode (nothing when untiled, so existing caches stay valid)."""
    if not getattr(vae, "use_tiling", False):
        return ""
    return tiling_identity_of({name: getattr(vae, name) for name in TILE})


def tiling_identity_of(tile: dict | None) -> str:
    """`tiling_identity` of a VAE with these tile settings (None: untiled), without needing the VAE."""
    if not tile:
        return ""
    return (
        f":tiled={tile['tile_sample_min_height']}x{tile['tile_sample_min_width']}"
        f"/{tile['tile_sample_stride_height']}x{tile['tile_sample_stride_width']}"
    )
