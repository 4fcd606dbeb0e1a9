"""Masked training: a per-file mask weights the loss per latent position (OneTrainer's masked training).

A mask lies beside its media file as `<stem>-masklabel.<ext>`: an image for an image; for a video, a video of the
same length or one image for every frame. White (1) trains, black (0) gets `data.unmasked_weight`; grey values
weight in between (the mean of the RGB channels over 255). Masks are probed and read like any media (rotation,
pixel aspect, EXIF, timestamps: frames as shown), resized and cropped exactly as their clip's frames and mirrored
with a flipped window, so the mask lines up with what the VAE saw; then brought to the latent grid and cached
beside the latents.

The latent-grid rule (`mask_to_latent_grid`): WAN's VAE is causal in time, so latent frame 0 encodes pixel frame
0 alone and latent frame k >= 1 encodes pixel frames (k-1)*t+1 .. k*t (t = the temporal stride, 4); spatially each
latent position covers an s x s pixel square (s = 8 for A14B, 16 for TI2V-5B). A latent position's mask value is
the mean over the pixels it encodes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from modules.data.caching.cache import DiskCache, cache_key, file_identity
from modules.data.clips.buckets import Bucket
from modules.data.flow.pipeline import PipelineStage
from modules.data.flow.report import DataReport
from modules.data.flow.stages import RESIZE_METHOD
from modules.data.media import media_io
from modules.data.sources.concepts import MASK_SUFFIX
from modules.data.sources.flip import flip_horizontally

MISSING_MASK_RULES = ("train_all", "skip")  # no mask file: train the whole clip, or leave the file out
LATENT_GRID_RULE = "causal-frame-groups-mean+square-mean"  # named in cache keys


def find_mask(path: Path) -> Path | None:
    """`clip.mp4` -> `clip-masklabel.<any media extension>` beside it (the first in name order), else None."""
    candidates = sorted(path.parent.glob(f"{glob_escape(path.stem)}{MASK_SUFFIX}.*"))
    return next((c for c in candidates if media_io.is_media(c)), None)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def mask_to_latent_grid(mask: torch.Tensor, latent_frames: int, latent_height: int, latent_width: int) -> torch.Tensor:
    """(frames, H, W) in [0, 1] -> (latent_frames, latent_height, latent_width) by the module's rule."""
    frames, height, width = mask.shape
    if height % latent_height or width % latent_width:
        raise ValueError(f"mask {height}x{width} is not a multiple of the latent grid {latent_height}x{latent_width}")
    if latent_frames > 1 and (frames - 1) % (latent_frames - 1):
        raise ValueError(f"{frames} mask frames do not fall into {latent_frames} causal latent frames")
    stride = (frames - 1) // (latent_frames - 1) if latent_frames > 1 else 1
    groups = [mask[:1]] + [mask[1 + k * stride : 1 + (k + 1) * stride] for k in range(latent_frames - 1)]
    in_time = torch.stack([group.mean(dim=0) for group in groups])  # (latent_frames, H, W)
    return F.avg_pool2d(in_time.unsqueeze(1), kernel_size=(height // latent_height, width // latent_width))[:, 0]


class FindMasks(PipelineStage):
    """Pairs each media file with its mask (probed as shown); files without one follow `on_missing`."""

    reads = ("path", "info")
    writes = ("mask_path", "mask_info")

    def __init__(self, report: DataReport, on_missing: str, backend: str = "auto"):
        if on_missing not in MISSING_MASK_RULES:
            raise ValueError(f"on_missing_mask {on_missing!r}: expected one of {', '.join(MISSING_MASK_RULES)}")
        self.report, self.on_missing, self.backend = report, on_missing, backend

    def process(self, items):
        out = []
        for item in items:
            mask_path = find_mask(item["path"])
            if mask_path is None:
                if self.on_missing == "skip":
                    self.report.skip(item["path"], "no mask", f"{item['path'].stem}{MASK_SUFFIX}.png (or a video)")
                    continue
                out.append({**item, "mask_path": None, "mask_info": None})
                continue
            try:
                mask_info = media_io.probe(mask_path, self.backend)
            except media_io.MediaError as error:
                self.report.skip(item["path"], "unreadable mask", f"{mask_path.name}: {error.reason}")
                continue
            problem = _mismatch(item["info"], mask_info)
            if problem:
                self.report.skip(item["path"], "mask does not fit", f"{mask_path.name}: {problem}")
                continue
            out.append({**item, "mask_path": mask_path, "mask_info": mask_info})
        return out


def _mismatch(info: media_io.MediaInfo, mask: media_io.MediaInfo) -> str:
    if (info.width, info.height) != (mask.width, mask.height):
        return f"shown as {mask.width}x{mask.height}, the media as {info.width}x{info.height}; make it the same size"
    if info.is_image and not mask.is_image:
        return "a video mask for an image; use an image"
    if not info.is_image and not mask.is_image and mask.frame_count != info.frame_count:
        return f"{mask.frame_count} frames, the video {info.frame_count}; use a video of the same length or one image"
    return ""


class CacheMasks(PipelineStage):
    """The mask of each cached window at its latent grid, cached beside the latents (entries of kind "masks")."""

    reads = ("path", "mask_path", "mask_info", "source_indices", "bucket", "latent_key")
    writes = ("mask_key",)

    def __init__(self, cache: DiskCache, backend: str = "auto"):
        self.cache, self.backend = cache, backend

    def key(self, item: dict, grid: tuple[int, int, int]) -> str:
        bucket: Bucket = item["bucket"]
        parts = {
            "kind": "mask",
            "mask": file_identity(item["mask_path"]),
            "indices": list(item["source_indices"]),
            "size": [bucket.frames, bucket.height, bucket.width],
            "grid": list(grid),
            "resize": RESIZE_METHOD,
            "rule": LATENT_GRID_RULE,
            "shown": dict(item["mask_info"].frame_rule or {}),
        }
        if item.get("flip"):
            parts["flip"] = True
        return cache_key(parts)

    def process(self, items):
        out = []
        for item in items:
            if item["mask_path"] is None:  # data.concepts[].on_missing_mask: train_all
                out.append({**item, "mask_key": ""})
                continue
            grid = tuple(self.cache.get("latents", item["latent_key"])["latents"].shape[1:])
            key = self.key(item, grid)
            if not self.cache.is_valid("masks", key):
                mask = mask_to_latent_grid(self.pixel_mask(item), *grid)
                self.cache.put("masks", key, {"mask": mask}, {"source": str(item["mask_path"])})
            out.append({**item, "mask_key": key})
        return out

    def pixel_mask(self, item: dict) -> torch.Tensor:
        """(frames, H, W) in [0, 1]: the mask's frames for this window, as the clip's frames were cut and resized."""
        bucket: Bucket = item["bucket"]
        info: media_io.MediaInfo = item["mask_info"]
        indices = [0] * len(item["source_indices"]) if info.is_image else list(item["source_indices"])
        # Read and resized as the clip's own frames are (stages.CacheLatents): (3, F, H, W) in [-1, 1].
        pixels = media_io.read_window(item["mask_path"], indices, bucket.width, bucket.height, self.backend, info)
        if item.get("flip"):
            pixels = flip_horizontally(pixels)
        return ((pixels.mean(dim=0) + 1) / 2).clamp(0, 1)
