"""The stages of the video data pipeline, in the order they run.

collect -> probe -> plan windows -> bucket -> cache latents -> cache captions. Each stage says what it reads
and writes (see pipeline.py). Only CacheLatents decodes video, and only for entries not already cached.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modules.data.caching.cache import DiskCache, cache_key, file_identity
from modules.data.clips.buckets import Bucket, resolution_bucket
from modules.data.clips.frame_windows import (
    is_4n1,
    plan_windows,
    resampled_source_indices,
    timestamp_source_indices,
    window_source_indices,
)
from modules.data.flow.pipeline import PipelineStage
from modules.data.flow.report import DataReport
from modules.data.media import media_io
from modules.data.sources.concepts import Concept, collect_media
from modules.data.sources.flip import flip_horizontally
from modules.util.errors import UserError
from modules.util.stop_point import stop_point

# Named in cache keys: changing how pixels are resized must not reuse latents made the old way.
RESIZE_METHOD = "cover-bilinear-antialias-centre-crop"
TEXT_BATCH = 8

VideoEncoder = Callable[[torch.Tensor], dict[str, torch.Tensor]]
TextEncoder = Callable[[list[str]], list[torch.Tensor]]


class CachingOutOfMemory(UserError, RuntimeError):
    """The VAE ran out of GPU memory on one clip; the message names it and the settings that help."""

    exit_code = 4  # as an out-of-memory stop in training (modules/trainer/guards/oom.py)


class CollectMedia(PipelineStage):
    reads = ("concept",)
    writes = ("path", "caption", "repeats")

    def __init__(self, report: DataReport):
        self.report = report

    def process(self, items):
        out = []
        for item in items:
            concept: Concept = item["concept"]
            for media in collect_media(concept, self.report):
                out.append({**item, "path": media.path, "caption": media.caption, "repeats": media.repeats})
        return out


class ProbeMedia(PipelineStage):
    reads = ("path",)
    writes = ("info",)

    def __init__(self, report: DataReport, backend: str = "auto"):
        self.report = report
        self.backend = backend

    def process(self, items):
        out = []
        # `disable` only when there is nothing: otherwise tqdm's default, which TQDM_DISABLE (set in the
        # processes other than the main one of several) turns off.
        quiet = {} if items else {"disable": True}
        for item in tqdm(items, desc="probing media", unit="file", **quiet):
            stop_point("probing media")  # a requested stop (Ctrl-C) is taken between files
            try:
                info = media_io.probe(item["path"], self.backend)
            except media_io.MediaError as error:
                self.report.skip(item["path"], "unreadable media", error.reason)
                continue
            if info.corrections and item["path"] not in self.report.corrected:  # once per file, not per concept
                for what in info.corrections:
                    self.report.correct(item["path"], what)
            out.append({**item, "info": info})
        return out


class PlanWindows(PipelineStage):
    reads = ("path", "info")
    writes = ("source_indices", "frames")

    def __init__(
        self,
        report: DataReport,
        target_fps: float,
        window_frames: int,
        mode: str,
        max_windows: int,
        stride: int,
        min_frames: int,
    ):
        if not is_4n1(window_frames):
            raise ValueError(f"data.frames: {window_frames} is not 4n+1")
        self.report = report
        self.target_fps = target_fps
        self.window_frames = window_frames
        self.mode = mode
        self.max_windows = max_windows
        self.stride = stride
        self.min_frames = min_frames

    def process(self, items):
        out = []
        for item in items:
            info: media_io.MediaInfo = item["info"]
            if info.is_image:
                out.append({**item, "source_indices": [0], "frames": 1})
                continue
            if info.timestamps is not None:  # variable rate: the frame shown at each target time
                resampled = timestamp_source_indices(info.timestamps, self.target_fps)
            else:
                resampled = resampled_source_indices(info.frame_count, info.fps, self.target_fps)
            windows = plan_windows(
                len(resampled), self.window_frames, self.mode, self.max_windows, self.stride, self.min_frames
            )
            if not windows:
                self.report.skip(
                    item["path"],
                    "too short",
                    f"{len(resampled)} frames at {self.target_fps:g} fps, below data.min_frames={self.min_frames}",
                )
                continue
            if windows[0].length < self.window_frames and self.mode != "full":
                self.report.note(
                    f"{item['path']}: {len(resampled)} frames at {self.target_fps:g} fps, shorter than "
                    f"{self.window_frames}; trained as one {windows[0].length}-frame window"
                )
            for window in windows:
                out.append(
                    {**item, "source_indices": window_source_indices(resampled, window), "frames": window.length}
                )
        return out


class AssignBuckets(PipelineStage):
    reads = ("info", "frames")
    writes = ("bucket",)

    def __init__(self, target_area: int, pixel_multiple: int):
        self.target_area = target_area
        self.pixel_multiple = pixel_multiple

    def process(self, items):
        out = []
        for item in items:
            info = item["info"]
            width, height = resolution_bucket(info.width, info.height, self.target_area, self.pixel_multiple)
            out.append({**item, "bucket": Bucket(item["frames"], height, width)})
        return out


class CacheLatents(PipelineStage):
    """VAE-encodes each window not yet cached. Decoding runs one window ahead on a thread, overlapping the encode."""

    reads = ("path", "info", "source_indices", "bucket")
    writes = ("latent_key",)

    def __init__(
        self,
        cache: DiskCache,
        encode_video: VideoEncoder,
        encoder_identity: str,
        report: DataReport,
        backend: str = "auto",
    ):
        self.cache = cache
        self.encode_video = encode_video
        self.encoder_identity = encoder_identity
        self.report = report
        self.backend = backend

    def key(self, item: dict) -> str:
        bucket: Bucket = item["bucket"]
        parts = {
            "kind": "video",
            "source": file_identity(item["path"]),
            "indices": list(item["source_indices"]),
            "size": [bucket.frames, bucket.height, bucket.width],
            "resize": RESIZE_METHOD,
            "encoder": self.encoder_identity,
        }
        # Only files whose decoded frames differ from cache format 1's (pixel aspect, rotation decord did not
        # apply, edit lists, EXIF, 16-bit, alpha) carry this part, so every other entry keeps its key.
        rule = item["info"].frame_rule
        if rule:
            parts["shown"] = dict(rule)
        # Only a mirrored window names the flip (modules/data/sources/flip.py), so unflipped windows keep their keys.
        if item.get("flip"):
            parts["flip"] = True
        return cache_key(parts)

    def process(self, items):
        keyed = [{**item, "latent_key": self.key(item)} for item in items]
        todo = [item for item in keyed if not self.cache.is_valid("latents", item["latent_key"])]
        failed: set[Path] = set()
        with (
            ThreadPoolExecutor(max_workers=1) as decoder,
            tqdm(total=len(todo), desc="caching latents", unit="window", disable=not todo) as bar,
        ):
            pending = decoder.submit(self._pixels, todo[0]) if todo else None
            for position, item in enumerate(todo):
                # A requested stop (Ctrl-C) is taken between entries: each one written is complete (atomic) and
                # kept; the window being decoded ahead is dropped.
                stop_point("caching latents")
                current = pending
                pending = decoder.submit(self._pixels, todo[position + 1]) if position + 1 < len(todo) else None
                try:
                    pixels = current.result()
                except media_io.MediaError as error:
                    if item["path"] not in failed:
                        self.report.skip(item["path"], "unreadable media", error.reason)
                    failed.add(item["path"])
                    bar.update(1)
                    continue
                try:
                    tensors = self.encode_video(pixels.unsqueeze(0))
                except torch.OutOfMemoryError as error:
                    raise CachingOutOfMemory(
                        f"{item['path']}: out of GPU memory while VAE-encoding this clip's {item['bucket']} window "
                        f"({error}). Entries cached so far are kept. Fix: lower data.resolution or data.frames, or "
                        "set memory.vae_tiling=on (see scripts/train.py --plan)"
                    ) from error
                self.cache.put(
                    "latents",
                    item["latent_key"],
                    {k: v[0] for k, v in tensors.items()},
                    {"source": str(item["path"]), "bucket": str(item["bucket"])},
                )
                bar.update(1)
        return [item for item in keyed if item["path"] not in failed]

    def _pixels(self, item: dict) -> torch.Tensor:
        bucket: Bucket = item["bucket"]
        indices = list(item["source_indices"])
        # One resize from the stored frames to the bucket, also for non-square pixels (media_io.read_window).
        pixels = media_io.read_window(item["path"], indices, bucket.width, bucket.height, self.backend, item["info"])
        return flip_horizontally(pixels) if item.get("flip") else pixels


class CacheCaptions(PipelineStage):
    reads = ("caption",)
    writes = ("text_key",)

    def __init__(
        self, cache: DiskCache, encode_text: TextEncoder, encoder_identity: str, kind: str = "text", batch: int = 0
    ):
        self.cache = cache
        self.encode_text = encode_text
        self.encoder_identity = encoder_identity
        self.kind = kind  # "text" (captions) or "prompt" (sample prompts, encoded one at a time: batch=1)
        self.batch = batch or TEXT_BATCH

    def key(self, caption: str) -> str:
        return cache_key({"kind": "text", "caption": caption, "encoder": self.encoder_identity})

    def process(self, items):
        keys = {item["caption"]: self.key(item["caption"]) for item in items}
        todo = [caption for caption, key in keys.items() if not self.cache.is_valid(self.kind, key)]
        what = "captions" if self.kind == "text" else "sample prompts"
        with tqdm(total=len(todo), desc=f"caching {what}", unit=self.kind, disable=not todo) as bar:
            for start in range(0, len(todo), self.batch):
                stop_point("caching captions")
                chunk = todo[start : start + self.batch]
                for caption, embeds in zip(chunk, self.encode_text(chunk)):
                    self.cache.put(self.kind, keys[caption], {"text_embeds": embeds}, {"caption": caption})
                bar.update(len(chunk))
        return [{**item, "text_key": keys[item["caption"]]} for item in items]
