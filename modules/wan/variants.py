"""The three WAN 2.2 models as data: what differs between them, in one table.

Everything variant-specific that the trainer needs (frame rate, pixel multiples, VAE strides,
expert boundaries, conditioning) is read from here, never hard-coded elsewhere.
Numbers: shared/design/WAN22_FACTS.md, checked against the public diffusers configs.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.base.model_loader import ModelLoadError
from modules.config.train_config import VARIANT_CHOICES

# The experts by their WanModel attribute names: high noise (the only expert of TI2V-5B) and low noise (A14B).
# Training routes steps between them (training/experts.py); LoRA files and sampling name them (formats, sampling).
HIGH, LOW = "transformer", "transformer_2"


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
# model.variant's choices are declared with the setting; "auto" (or empty) means: whatever the model files are.
if set(VARIANT_CHOICES) != {"auto", *VARIANTS}:
    raise ImportError(f"modules/config/train_config.py VARIANT_CHOICES {VARIANT_CHOICES} does not match {VARIANTS}")


def variant_for_in_channels(in_channels: int | None) -> WanVariant | None:
    """The variant whose transformer takes `in_channels` (16 T2V-A14B, 36 I2V-A14B, 48 TI2V-5B), else None."""
    return next((v for v in VARIANTS.values() if v.transformer_in_channels == in_channels), None)


def check_variant_name(expected: str | None, where: str) -> None:
    """model.variant must be auto/empty or a known name."""
    if expected not in (None, "", "auto") and expected not in VARIANTS:
        raise ModelLoadError(
            f"{where}: unknown variant {expected!r}. Expected one of: {', '.join(VARIANT_CHOICES)}. "
            "Fix: set model.variant to one of those."
        )


def check_expected_variant(variant: WanVariant, expected: str | None, where: str, what: str, found: str = "") -> None:
    """The model found must be the one model.variant names (auto/empty: any); `what` says what was looked at."""
    check_variant_name(expected, where)
    if expected in (None, "", "auto") or expected == variant.name:
        return
    raise ModelLoadError(
        f"{where}: {what} holds {variant.name}, but the config asks for {expected} (model.variant). "
        + (f"Found: {found}. " if found else "")
        + f"Expected: {what} holding {expected} ({VARIANTS[expected].real_repo_id}). "
        f"Fix: set model.variant to 'auto' or '{variant.name}', or point the model settings to a {expected} model."
    )
