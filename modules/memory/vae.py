"""Peak memory of one VAE pass (encode while caching, decode after sampling), with and without spatial tiling.

WAN's VAEs are causal in time: they encode the first frame and then chunks of 4 frames, and decode one latent
frame (4 video frames) at a time, keeping a two-frame cache per conv. The peak is therefore at the full-resolution
stage, about `LIVE_TENSORS` tensors of (chunk frames + 2 cached) x height x width x channels at once; the number is
a rough estimate (docs/presets.md), not a measurement. Tiling (diffusers' AutoencoderKLWan.enable_tiling) bounds
height x width by one tile, whatever the clip's size.
"""

from __future__ import annotations

from modules.memory.facts import VaeFacts

LIVE_TENSORS = 4
CACHED_FRAMES = 2
# diffusers' AutoencoderKLWan defaults: 256 x 256 pixel tiles.
TILE_PIXELS = 256


def vae_pass_bytes(vae: VaeFacts, width: int, height: int, dtype_bytes: int, decode: bool, tiled: bool) -> float:
    if tiled:
        width, height = min(width, TILE_PIXELS), min(height, TILE_PIXELS)
    channels = vae.decoder_channels if decode else vae.encoder_channels
    frames = vae.temporal_chunk + CACHED_FRAMES
    pixels = (width // vae.patch) * (height // vae.patch)
    return LIVE_TENSORS * frames * pixels * channels * dtype_bytes
