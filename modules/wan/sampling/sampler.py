"""WanModelSampler: videos from a WAN 2.2 model (being trained, or a base model with LoRAs), written with a sidecar.

One sample = settings resolved (sample_settings) -> frames from diffusers' own pipeline (sample_pipeline)
-> video + static check + JSON sidecar (util.sample_export). A sample with `clips` > 1 is a continuity chain:
each clip after the first is image-to-video from the previous clip's last frame; clips, their last frames
(PNG) and the joined video are all written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.base.model_sampler import BaseModelSampler
from modules.util.atomic import atomic_path
from modules.util.sample_export import ExportedSample, export_sample, video_path
from modules.util.video_checks import DEFAULT_STATIC_THRESHOLD, MotionCheck
from modules.util.video_export import check_encoder
from modules.wan.model import ENCODERS, WanModel
from modules.wan.sampling.loras import (
    LoadedLora,
    LoraSpec,
    apply_loras,
    check_embeddings,
    load_embeddings,
    remove_loras,
)
from modules.wan.sampling.pipeline import generate_clip, to_uint8

# Re-exported: the rounding rules are part of the sampler's public surface.
from modules.wan.sampling.settings import SampleError, SampleSettings, resolve_settings, round_frames, round_size  # noqa: F401

log = logging.getLogger("wan_trainer.samples")
JOIN_RULE = "clip 1, then every later clip without its first frame (it re-renders the previous clip's last frame)"


@dataclass
class SamplerOptions:
    format: str = "mp4"
    quality: int | None = None  # CRF; None: the format's default
    static_threshold: float = DEFAULT_STATIC_THRESHOLD
    device: torch.device | None = None  # None: sample where the parts already are
    offload_experts: bool = False  # only the expert in use on `device`
    boundary_ratio: float | None = None  # None: the model's (0.875 T2V-A14B, 0.9 I2V-A14B)
    embeddings: list[str] = field(default_factory=list)
    progress_bar: bool = False
    text_encoder_on_cpu: bool = False  # encode prompts on the CPU (a GPU too small for UMT5)
    # Release the encoders a sample read (the VAE for its decode) once it is written: training's host memory.
    release_encoders: bool = False


@dataclass
class ClipResult:
    path: Path
    sidecar: Path
    last_frame: Path  # PNG of the clip's last frame: the next clip's start image


@dataclass
class SampleResult:
    path: Path
    sidecar: Path
    frames: int  # frames actually written (for a chain: of the joined video)
    width: int
    height: int
    fps: float
    motion: MotionCheck
    settings: SampleSettings
    clips: list[ClipResult] = field(default_factory=list)
    video: np.ndarray | None = None  # the written uint8 frames, for TensorBoard; not kept beyond the next sample


def generate_float_frames(model: WanModel, sample_config, start_image: Image.Image | None = None) -> np.ndarray:
    """(F, H, W, 3) float32 in [0, 1] of one clip, exactly as the diffusers pipeline returns it."""
    settings = resolve_settings(model, sample_config)
    image = start_image if start_image is not None else load_start_image(settings.start_image)
    return generate_clip(model, settings, image)


def generate_frames(model: WanModel, sample_config) -> np.ndarray:
    """(F, H, W, 3) uint8 frames of one clip."""
    return to_uint8(generate_float_frames(model, sample_config))


def load_start_image(path: str) -> Image.Image | None:
    if not path:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise SampleError(f"start_image: cannot read {path!r} as an image ({error})") from None


def save_png(frame: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")
    return path


class WanModelSampler(BaseModelSampler):
    def __init__(self, options: SamplerOptions | None = None) -> None:
        self.options = options or SamplerOptions()
        check_embeddings(self.options.embeddings)
        self.loras: list[LoadedLora] = []
        self.embeddings: list[dict] | None = None  # loaded into the model on the first sample
        self.last_result: SampleResult | None = None

    @classmethod
    def for_training(cls, config, device: torch.device) -> WanModelSampler:
        sampling = config.sampling
        return cls(
            SamplerOptions(
                format=sampling.format,
                quality=sampling.quality,
                static_threshold=sampling.static_threshold,
                device=device,
                # Both experts sample as at inference; the offloading choice of training applies here too.
                offload_experts=config.experts.offload_inactive_expert,
                boundary_ratio=config.experts.boundary_ratio,
                text_encoder_on_cpu=config.memory.text_encoder_on_cpu,
                release_encoders=True,
            )
        )

    def preflight(self) -> str:
        """Fail before minutes of sampling if the video encoder is missing; returns its version."""
        return check_encoder(self.options.format)

    # ---- LoRAs -----------------------------------------------------------------------------------
    def use_loras(self, model: WanModel, specs: list[LoraSpec]) -> list[LoadedLora]:
        """Attach LoRAs (weights per expert) for every later sample; they are recorded in each sidecar."""
        self.loras += apply_loras(model, list(specs))
        return self.loras

    def remove_loras(self, model: WanModel) -> None:
        remove_loras(model, self.loras)
        self.loras = []

    # ---- sampling --------------------------------------------------------------------------------
    def sample(self, model: WanModel, sample_config, destination: Path, extra: dict | None = None) -> Path:
        """Write the sample (and, for a chain, each clip and its last frame) with sidecars; returns the video path.

        `extra` is merged into every sidecar (the trainer records the step there).
        """
        resident = {name for name in ENCODERS if model.resident(name) is not None}
        try:
            return self._sample(model, sample_config, destination, extra)
        finally:
            if self.options.release_encoders:  # what this sample read (the VAE, for its decode) leaves again
                model.release_encoders(tuple(name for name in ENCODERS if name not in resident))

    def _sample(self, model: WanModel, sample_config, destination: Path, extra: dict | None) -> Path:
        self.last_result = None  # release the previous frames before making new ones
        settings = resolve_settings(model, sample_config, self.options.boundary_ratio)
        destination = video_path(destination, self.options.format)
        self.preflight()
        if self.embeddings is None:
            self.embeddings = load_embeddings(model, self.options.embeddings)
        start_image = load_start_image(settings.start_image)
        if sample_config.clips == 1:
            frames = self._generate(model, settings, start_image)
            exported = self._export(frames, destination, self._record(model, settings, start_image is not None, extra))
            self.last_result = self._result(exported, frames, settings)
            return exported.path
        return self._sample_chain(model, sample_config, settings, start_image, destination, extra)

    def _sample_chain(self, model, sample_config, settings, start_image, destination: Path, extra) -> Path:
        clips, pieces, pipelines = [], [], []
        stem = destination.name[: -len(destination.suffix)] if destination.suffix else destination.name
        prompts = [settings.prompt, *sample_config.next_prompts]
        for index in range(sample_config.clips):
            clip_settings = settings.for_clip(index, prompts[index] if index < len(prompts) else settings.prompt)
            frames = self._generate(model, clip_settings, start_image)
            record = self._record(model, clip_settings, start_image is not None, extra)
            record["chain"] = {
                "clip": index + 1,
                "clips": sample_config.clips,
                "start": (
                    "start_image"
                    if index == 0 and start_image is not None
                    else "text"
                    if index == 0
                    else f"last frame of clip {index}: {clips[-1].last_frame.name}"
                ),
            }
            clip_path = destination.with_name(f"{stem}-clip{index + 1:02d}{destination.suffix}")
            exported = self._export(frames, clip_path, record)
            pipelines.append(record["pipeline"])
            last = save_png(frames[-1], destination.with_name(f"{stem}-clip{index + 1:02d}-last.png"))
            clips.append(ClipResult(exported.path, exported.sidecar, last))
            pieces.append(frames if index == 0 else frames[1:])
            # Exactly the saved PNG's pixels: a chain can be resumed from the file and give the same clip.
            start_image = Image.fromarray(frames[-1])
        joined = np.concatenate(pieces)
        record = self._record(model, settings, bool(settings.start_image), extra)
        record["pipeline"] = pipelines  # one per clip
        record["prompts"] = [prompts[i] if i < len(prompts) else settings.prompt for i in range(sample_config.clips)]
        record["chain"] = {
            "clips": [{"file": c.path.name, "sidecar": c.sidecar.name, "last_frame": c.last_frame.name} for c in clips],
            "join_rule": JOIN_RULE,
            "seeds": [settings.seed + i for i in range(sample_config.clips)],
        }
        exported = self._export(joined, destination, record)
        self.last_result = self._result(exported, joined, settings, clips)
        return exported.path

    def _generate(self, model: WanModel, settings: SampleSettings, start_image: Image.Image | None) -> np.ndarray:
        frames = generate_clip(
            model,
            settings,
            start_image,
            device=self.options.device,
            offload_experts=self.options.offload_experts,
            progress_bar=self.options.progress_bar,
            text_on_cpu=self.options.text_encoder_on_cpu,
        )
        return to_uint8(frames)

    def _export(self, frames: np.ndarray, path: Path, record: dict) -> ExportedSample:
        return export_sample(
            frames,
            path,
            fps=record["fps"],
            format=self.options.format,
            quality=self.options.quality,
            static_threshold=self.options.static_threshold,
            record=record,
        )

    def _record(self, model: WanModel, settings: SampleSettings, image_to_video: bool, extra: dict | None) -> dict:
        variant = model.variant
        own = {lora.adapter for lora in self.loras}
        others = sorted({name for expert in model.experts() for name in getattr(expert, "peft_config", {}) or {}} - own)
        return {
            **settings.sidecar(variant.pixel_multiple),
            "fps": settings.fps,
            "start_image": settings.start_image or None,
            "pipeline": "WanImageToVideoPipeline" if image_to_video else "WanPipeline",
            "model": {
                "path": str(model.model_path),
                "variant": variant.name,
                "identity": model.source_identity,
                "experts": ["high_noise", "low_noise"] if variant.has_transformer_2 else ["single"],
            },
            "loras": [lora.sidecar() for lora in self.loras],
            # Adapters the sampler did not load: during training, the LoRA being trained.
            "adapters_in_model": others,
            "embeddings": self.embeddings or [],
            **(extra or {}),
        }

    def _result(self, exported: ExportedSample, frames: np.ndarray, settings, clips=()) -> SampleResult:
        count, height, width, _ = frames.shape
        return SampleResult(
            path=exported.path,
            sidecar=exported.sidecar,
            frames=count,
            width=width,
            height=height,
            fps=settings.fps,
            motion=exported.motion,
            settings=settings,
            clips=list(clips),
            video=frames,
        )
