"""The three WAN 2.2 models as data: what differs between them, in one table.

Everything variant-specific that the trainer needs (frame rate, pixel multiples, VAE strides,
expert boundaries, conditioning) is read from here, never hard-coded elsewhere.
Numbers: shared/design/WAN22_FACTS.md, checked against the public diffusers configs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WanVariant:
    name: str
    # Transformer structure (what detection checks; dims differ between real and tiny models).
    transformer_in_channels: int
    transformer_out_channels: int
    latent_channels: int  # VAE z_dim
    has_transformer_2: bool
    # Sampling-time behaviour.
    boundary_ratio: float | None  # transformer serves t >= boundary * 1000; transformer_2 below
    expand_timesteps: bool  # one timestep per latent token (TI2V-5B)
    image_conditioning: str  # "none", "channel_concat" (I2V-A14B) or "first_frame" (TI2V-5B)
    # Data constraints.
    fps: int
    default_frames: int
    pixel_multiple: int  # width and height must be multiples of this
    vae_stride_temporal: int
    vae_stride_spatial: int
    # Official sampling settings (the defaults of our sampler).
    sample_flow_shift: float
    sample_guidance_scale: float
    sample_guidance_scale_2: float | None
    sample_steps: int
    real_repo_id: str

    @property
    def num_experts(self) -> int:
        return 2 if self.has_transformer_2 else 1

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.vae_stride_temporal + 1


TI2V_5B = WanVariant(
    name="TI2V-5B",
    transformer_in_channels=48,
    transformer_out_channels=48,
    latent_channels=48,
    has_transformer_2=False,
    boundary_ratio=None,
    expand_timesteps=True,
    image_conditioning="first_frame",
    fps=24,
    default_frames=121,
    pixel_multiple=32,
    vae_stride_temporal=4,
    vae_stride_spatial=16,
    sample_flow_shift=5.0,
    sample_guidance_scale=5.0,
    sample_guidance_scale_2=None,
    sample_steps=50,
    real_repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
)

T2V_A14B = WanVariant(
    name="T2V-A14B",
    transformer_in_channels=16,
    transformer_out_channels=16,
    latent_channels=16,
    has_transformer_2=True,
    boundary_ratio=0.875,
    expand_timesteps=False,
    image_conditioning="none",
    fps=16,
    default_frames=81,
    pixel_multiple=16,
    vae_stride_temporal=4,
    vae_stride_spatial=8,
    sample_flow_shift=12.0,
    sample_guidance_scale=4.0,
    sample_guidance_scale_2=3.0,
    sample_steps=40,
    real_repo_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
)

I2V_A14B = WanVariant(
    name="I2V-A14B",
    transformer_in_channels=36,
    transformer_out_channels=16,
    latent_channels=16,
    has_transformer_2=True,
    boundary_ratio=0.9,
    expand_timesteps=False,
    image_conditioning="channel_concat",
    fps=16,
    default_frames=81,
    pixel_multiple=16,
    vae_stride_temporal=4,
    vae_stride_spatial=8,
    sample_flow_shift=5.0,
    sample_guidance_scale=3.5,
    sample_guidance_scale_2=3.5,
    sample_steps=40,
    real_repo_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
)

VARIANTS: dict[str, WanVariant] = {v.name: v for v in (TI2V_5B, T2V_A14B, I2V_A14B)}
