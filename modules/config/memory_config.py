"""The `memory` section: settings that trade speed for GPU memory (see docs/presets.md for what each saves)."""

from __future__ import annotations

from dataclasses import dataclass

from modules.config.fields import setting


@dataclass
class MemoryConfig:
    blocks_to_swap: int = setting(
        0,
        help="Frozen weights of this many transformer blocks live in CPU memory and are copied to the GPU just "
        "before each block runs (about 2 blocks in flight); 0: every block stays on the GPU",
        min=0,
    )
    offload_activations: bool = setting(
        False, help="Keep the checkpointed block inputs in CPU memory instead of on the GPU (long clips)"
    )
    vae_tiling: str = setting(
        "auto",
        help="Encode and decode video in overlapping spatial tiles (diffusers' AutoencoderKLWan tiling); 'auto': "
        "only where the memory planner says the untiled pass does not fit the GPU",
        choices=("auto", "on", "off"),
    )
