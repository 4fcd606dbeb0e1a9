"""What a sample will actually be generated with: sizes and frames the model accepts, guidance, shift, scheduler.

Resolved once, before any pipeline runs, so that the sidecar records exactly what was used (and what was
asked for), and bad requests fail before minutes of sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from modules.config.sampling_config import SCHEDULERS
from modules.util.errors import UserError
from modules.wan.model import WanModel

FRAMES_RULE = (
    "rounded up to the nearest 4n+1 at or above the request (the VAE compresses time by 4 after the first frame)"
)


class SampleError(UserError, ValueError):
    """A sample request the model cannot serve; the message says which setting and what to do."""


def round_frames(frames: int, temporal_stride: int = 4) -> int:
    """The nearest n*stride+1 at or above `frames` (the VAE needs 4n+1 frames)."""
    frames = max(int(frames), 1)
    return -(-(frames - 1) // temporal_stride) * temporal_stride + 1


def round_size(pixels: int, multiple: int) -> int:
    """Down to the model's pixel multiple (never below one multiple), as diffusers' pipelines round."""
    return max(multiple, int(pixels) // multiple * multiple)


@dataclass(frozen=True)
class SampleSettings:
    """One clip's generation settings after every default and rounding rule has been applied."""

    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    frames: int
    requested_width: int
    requested_height: int
    requested_frames: int
    steps: int
    guidance_scale: float
    guidance_scale_2: float | None  # None for a one-expert model
    flow_shift: float
    scheduler: str  # "unipc" or "euler"
    boundary_ratio: float | None  # where the pipeline switches from transformer to transformer_2
    fps: float
    start_image: str  # "" for text-to-video

    def for_clip(self, index: int, prompt: str) -> SampleSettings:
        """Clip `index` (0-based) of a chain: its own prompt and seed + index, everything else shared."""
        return replace(self, prompt=prompt, seed=self.seed + index)

    def sidecar(self, pixel_multiple: int) -> dict:
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "sampling": {
                "steps": self.steps,
                "scheduler": self.scheduler,
                "guidance_scale": self.guidance_scale,
                "guidance_scale_2": self.guidance_scale_2,
                "flow_shift": self.flow_shift,
                "boundary_ratio": self.boundary_ratio,
            },
            "frames": {"requested": self.requested_frames, "actual": self.frames, "rule": FRAMES_RULE},
            "size": {
                "requested": [self.requested_width, self.requested_height],
                "actual": [self.width, self.height],
                "rule": f"width and height rounded down to a multiple of {pixel_multiple}",
            },
        }


def model_flow_shift(scheduler) -> float | None:
    """The shift a scheduler config carries (UniPC/DPM call it flow_shift, FlowMatchEuler calls it shift)."""
    config = scheduler.config
    for key in ("flow_shift", "shift"):
        if key in config and config[key] is not None:
            return float(config[key])
    return None


def resolve_settings(model: WanModel, sample_config, boundary_ratio: float | None = None) -> SampleSettings:
    """Apply the model's rules and defaults to a SampleConfig; raise SampleError for what the model cannot do."""
    variant = model.variant
    if sample_config.scheduler not in SCHEDULERS:
        raise SampleError(f"scheduler {sample_config.scheduler!r} is unknown; choose one of {', '.join(SCHEDULERS)}")
    if not sample_config.prompt:
        raise SampleError("prompt: empty; a sample needs a prompt")
    two_experts = variant.has_transformer_2
    if two_experts and model.transformer_2 is None:
        raise SampleError(
            f"{variant.name} samples need both experts, but the low-noise expert (transformer_2) is not loaded"
        )
    guidance = sample_config.guidance_scale
    guidance_2 = sample_config.guidance_scale_2
    if guidance is None:
        guidance = variant.sample_guidance_scale
        if guidance_2 is None:
            guidance_2 = variant.sample_guidance_scale_2
    if guidance_2 is None:
        guidance_2 = guidance  # diffusers' rule: the low-noise stage reuses guidance_scale
    shift = sample_config.flow_shift
    if shift is None:
        shift = model_flow_shift(model.scheduler) or variant.sample_flow_shift
    start_image = sample_config.start_image or ""
    if start_image and variant.image_conditioning == "none":
        raise SampleError(
            f"start_image: {variant.name} is text-to-video only; use I2V-A14B or TI2V-5B for image-to-video"
        )
    if variant.image_conditioning == "channel_concat" and not start_image:
        raise SampleError(
            f"start_image: {variant.name} is image-to-video and needs one. Fix: set start_image to an image file"
        )
    if sample_config.clips > 1 and variant.image_conditioning == "none":
        raise SampleError(
            f"clips: {variant.name} cannot continue a clip from its last frame (no image conditioning); "
            "use clips 1, or I2V-A14B / TI2V-5B"
        )
    if start_image and not Path(start_image).is_file():
        raise SampleError(f"start_image: {start_image!r} is not a file. Fix: give the path of a PNG/JPEG image")
    return SampleSettings(
        prompt=sample_config.prompt,
        negative_prompt=sample_config.negative_prompt,
        seed=int(sample_config.seed),
        width=round_size(sample_config.width, variant.pixel_multiple),
        height=round_size(sample_config.height, variant.pixel_multiple),
        frames=round_frames(sample_config.frames, variant.vae_stride_temporal),
        requested_width=int(sample_config.width),
        requested_height=int(sample_config.height),
        requested_frames=int(sample_config.frames),
        steps=int(sample_config.steps),
        guidance_scale=float(guidance),
        guidance_scale_2=float(guidance_2) if two_experts else None,
        flow_shift=float(shift),
        scheduler=sample_config.scheduler,
        boundary_ratio=(boundary_ratio if boundary_ratio is not None else variant.boundary_ratio)
        if two_experts
        else None,
        fps=float(sample_config.fps or variant.fps),
        start_image=start_image,
    )


def make_scheduler(model_scheduler, name: str, flow_shift: float):
    """A fresh scheduler (they keep per-run state) of the chosen kind with the requested shift.

    The model's own scheduler config is reused when it is already of that kind, so "unipc" on a Wan-AI
    folder is exactly the scheduler diffusers users get, only with the shift set.
    """
    num_train_timesteps = model_scheduler.config.get("num_train_timesteps", 1000)
    if name == "unipc":
        if isinstance(model_scheduler, UniPCMultistepScheduler):
            return UniPCMultistepScheduler.from_config(model_scheduler.config, flow_shift=flow_shift)
        return UniPCMultistepScheduler(
            num_train_timesteps=num_train_timesteps,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=flow_shift,
            solver_order=2,
        )
    if name == "euler":
        if isinstance(model_scheduler, FlowMatchEulerDiscreteScheduler):
            return FlowMatchEulerDiscreteScheduler.from_config(model_scheduler.config, shift=flow_shift)
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=flow_shift)
    raise SampleError(f"scheduler {name!r} is unknown; choose one of {', '.join(SCHEDULERS)}")
