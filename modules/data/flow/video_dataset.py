"""The cached dataset: run the pipeline once (the only place media is decoded), then serve cached tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modules.data.caching.cache import DiskCache
from modules.data.clips.buckets import Bucket
from modules.data.flow.masks import CacheMasks, FindMasks
from modules.data.flow.pipeline import Pipeline
from modules.data.flow.report import DataReport
from modules.data.flow.stages import (
    AssignBuckets,
    CacheCaptions,
    CacheLatents,
    CollectMedia,
    PlanWindows,
    ProbeMedia,
    TextEncoder,
    VideoEncoder,
)
from modules.data.sources.concepts import Concept, DataError
from modules.data.sources.flip import AddFlippedWindows


@dataclass(frozen=True)
class CachedSample:
    source: Path
    caption: str
    bucket: Bucket
    latent_key: str
    text_key: str
    mask_key: str | None = None  # masked training: "masks" entry, "" for all ones (no mask file); None: off


@dataclass(frozen=True)
class DatasetSettings:
    target_fps: float
    window_frames: int
    min_frames: int = 1
    extraction_mode: str = "head"
    max_windows: int = 1
    stride: int = 8
    target_area: int = 480 * 480
    pixel_multiple: int = 32
    backend: str = "auto"
    flip: bool = False  # also train every window mirrored left-right (modules/data/sources/flip.py)
    masked: bool = False  # cache a loss mask per window (modules/data/flow/masks.py)
    on_missing_mask: str = "train_all"


def settings_from_config(data, model_fps: float, pixel_multiple: int) -> DatasetSettings:
    """The run's settings from the config's `data` section and the model's rate and pixel multiple: the one place
    both training (modules/wan/training/data_loader.py) and `scripts/dataset.py check` build them."""
    return DatasetSettings(
        target_fps=data.fps or model_fps,
        window_frames=data.frames,
        min_frames=data.min_frames,
        extraction_mode=data.extraction_mode,
        max_windows=data.max_windows_per_video,
        stride=data.slide_stride,
        target_area=data.resolution * data.resolution,
        pixel_multiple=pixel_multiple,
        masked=data.masked_training,
    )


def build_pipeline(
    settings: DatasetSettings,
    cache: DiskCache,
    encode_video: VideoEncoder,
    encode_text: TextEncoder,
    video_identity: str,
    text_identity: str,
    report: DataReport,
) -> Pipeline:
    return Pipeline(
        [
            CollectMedia(report),
            ProbeMedia(report, settings.backend),
            *([FindMasks(report, settings.on_missing_mask, settings.backend)] if settings.masked else []),
            PlanWindows(
                report,
                settings.target_fps,
                settings.window_frames,
                settings.extraction_mode,
                settings.max_windows,
                settings.stride,
                settings.min_frames,
            ),
            AssignBuckets(settings.target_area, settings.pixel_multiple),
            *([AddFlippedWindows()] if settings.flip else []),
            CacheLatents(cache, encode_video, video_identity, report, settings.backend),
            *([CacheMasks(cache, settings.backend)] if settings.masked else []),
            CacheCaptions(cache, encode_text, text_identity),
        ],
        inputs=("concept",),
    )


def build_cached_dataset(
    concepts: list[Concept],
    settings: DatasetSettings,
    cache: DiskCache,
    encode_video: VideoEncoder,
    encode_text: TextEncoder,
    video_identity: str,
    text_identity: str,
    report: DataReport,
) -> list[CachedSample]:
    """Probe, plan, bucket and cache every concept; one CachedSample per window and repeat."""
    pipeline = build_pipeline(settings, cache, encode_video, encode_text, video_identity, text_identity, report)
    items = pipeline.run([{"concept": concept} for concept in concepts])
    samples = []
    for item in items:
        sample = CachedSample(
            item["path"], item["caption"], item["bucket"], item["latent_key"], item["text_key"], item.get("mask_key")
        )
        samples.extend([sample] * item["repeats"])
    return samples


def load_sample(sample: CachedSample, cache: DiskCache) -> dict[str, torch.Tensor]:
    """The cached tensors of one sample: the latent entry's tensors plus "text_embeds"."""
    latents = cache.get("latents", sample.latent_key)
    text = cache.get("text", sample.text_key)
    if latents is None or text is None:
        raise DataError(
            f"{cache.root}: the cache entry of {sample.source} ({sample.bucket}) disappeared or broke during training. "
            "Fix: start the run again; missing entries are rebuilt before the first step."
        )
    tensors = {**latents, "text_embeds": text["text_embeds"]}
    if sample.mask_key is not None:  # masked training; a file without a mask trains everywhere
        mask = cache.get("masks", sample.mask_key) if sample.mask_key else None
        if sample.mask_key and mask is None:
            raise DataError(
                f"{cache.root}: the mask entry of {sample.source} ({sample.bucket}) disappeared or broke during "
                "training. Fix: start the run again; missing entries are rebuilt before the first step."
            )
        tensors["mask"] = mask["mask"] if mask else torch.ones(latents["latents"].shape[1:])
    return tensors
