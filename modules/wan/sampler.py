"""WanModelSampler: videos from the model being trained, through diffusers' own WanPipeline.

Sampling with the inference pipeline itself (not a re-implementation) means a sample shows exactly what a
user will get after loading the saved LoRA into diffusers. Both experts of A14B take part, as in inference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import WanPipeline

from modules.base.model_sampler import BaseModelSampler
from modules.util.video_export import write_video
from modules.wan.model import WanModel


@dataclass(frozen=True)
class SampleResult:
    path: Path | None
    frames: int  # the frame count actually generated (requested count rounded up to 4n+1)
    width: int
    height: int
    fps: float


def round_frames(frames: int, temporal_stride: int = 4) -> int:
    """The nearest n*stride+1 at or above `frames` (the VAE needs 4n+1 frames)."""
    frames = max(int(frames), 1)
    return -(-(frames - 1) // temporal_stride) * temporal_stride + 1


def round_size(pixels: int, multiple: int) -> int:
    """Down to the model's pixel multiple (never below one multiple)."""
    return max(multiple, int(pixels) // multiple * multiple)


def sampling_scheduler(scheduler, flow_shift: float | None):
    """A fresh scheduler (they keep per-run state) from the model's config, with the requested flow shift."""
    overrides = {}
    if flow_shift is not None:
        config = scheduler.config
        # UniPC/DPM++ call it flow_shift; FlowMatchEulerDiscreteScheduler calls it shift.
        key = "flow_shift" if "flow_shift" in config else "shift" if "shift" in config else None
        if key is None:
            raise ValueError(f"{type(scheduler).__name__} has no flow shift setting; leave flow_shift empty")
        overrides[key] = float(flow_shift)
    return type(scheduler).from_config(scheduler.config, **overrides)


@contextmanager
def sampling_mode(model: WanModel) -> Iterator[None]:
    """Eval mode (no LoRA dropout) and no autograd while sampling; every part's train flag is restored after."""
    parts = [model.text_encoder, model.vae, *model.experts()]
    was_training = [part.training for part in parts]
    try:
        for part in parts:
            part.eval()
        with torch.no_grad():
            yield
    finally:
        for part, training in zip(parts, was_training):
            part.train(training)


def build_pipeline(model: WanModel, flow_shift: float | None = None) -> WanPipeline:
    """A WanPipeline over the model's own modules (adapters included, nothing copied) and a fresh scheduler."""
    if model.variant.image_conditioning == "channel_concat":
        raise NotImplementedError(
            f"{model.variant.name}: samples need a start image (WanImageToVideoPipeline); not supported yet"
        )
    pipe = WanPipeline(
        tokenizer=model.tokenizer,
        text_encoder=model.text_encoder,
        vae=model.vae,
        scheduler=sampling_scheduler(model.scheduler, flow_shift),
        transformer=model.transformer,
        transformer_2=model.transformer_2,
        boundary_ratio=model.variant.boundary_ratio,
        expand_timesteps=model.variant.expand_timesteps,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_settings(model: WanModel, sample_config) -> dict:
    """The pipeline arguments: sizes rounded to what the model accepts, unset guidance from the config's rules."""
    variant = model.variant
    guidance_2 = sample_config.guidance_scale_2
    return dict(
        prompt=sample_config.prompt,
        negative_prompt=sample_config.negative_prompt or None,
        width=round_size(sample_config.width, variant.pixel_multiple),
        height=round_size(sample_config.height, variant.pixel_multiple),
        num_frames=round_frames(sample_config.frames, variant.vae_stride_temporal),
        num_inference_steps=sample_config.steps,
        guidance_scale=sample_config.guidance_scale,
        # None means "same as guidance_scale"; only a two-expert pipeline accepts a second scale.
        guidance_scale_2=(sample_config.guidance_scale if guidance_2 is None else guidance_2)
        if model.transformer_2 is not None else None,
        max_sequence_length=model.text_max_length,
    )


def generate_float_frames(model: WanModel, sample_config) -> np.ndarray:
    """(F, H, W, 3) float32 in [0, 1], exactly as WanPipeline(output_type="np") returns it."""
    settings = sample_settings(model, sample_config)
    with sampling_mode(model):
        pipe = build_pipeline(model, sample_config.flow_shift)
        # A CPU generator makes the noise identical on every device.
        generator = torch.Generator("cpu").manual_seed(int(sample_config.seed))
        video = pipe(**settings, generator=generator, output_type="np").frames[0]
    return np.asarray(video, dtype=np.float32)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def generate_frames(model: WanModel, sample_config) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of one sample."""
    return to_uint8(generate_float_frames(model, sample_config))


class WanModelSampler(BaseModelSampler):
    def __init__(self) -> None:
        self.last_result: SampleResult | None = None

    def sample(self, model: WanModel, sample_config, destination: Path) -> Path:
        """Generate and write an MP4 to `destination`; `last_result` records the frames actually made."""
        frames = generate_frames(model, sample_config)
        fps = sample_config.fps or model.variant.fps
        path = write_video(frames, Path(destination), fps, format="mp4")
        count, height, width, _ = frames.shape
        self.last_result = SampleResult(path=path, frames=count, width=width, height=height, fps=float(fps))
        return path
