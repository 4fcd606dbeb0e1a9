"""Qwen-VL vision input without torchvision: frames -> normalised, patch-flattened pixels and their (t, h, w) grid.

transformers' Qwen-VL *video* processors are built on torchvision, which has no build for this project's CPU or ROCm
torch (docs/dataset_tools.md). The model itself needs only the two tensors its vision tower documents:
`pixel_values_videos` (one row per patch, `channels * temporal_patch_size * patch_size**2` values, rows in the
order the tower's 2x2 merge expects) and `video_grid_thw`. This module makes them from the frames the trainer
reads, following the checkpoint's own preprocessing settings (patch sizes, mean/std, pixel budget), so a
caption describes the pixels the trainer will train on. Images take the same path as one frame repeated over a
temporal patch, which is what transformers' image processor does; tests compare the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Qwen2-VL / Qwen2.5-VL (OpenAI CLIP) and Qwen3-VL (0.5) defaults, used only where a config leaves a key out.
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionGrid:
    """One processor config's geometry and normalisation."""

    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = _CLIP_MEAN
    image_std: tuple[float, ...] = _CLIP_STD
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    # Qwen3-VL's video budget counts every frame (t * h * w); Qwen2/2.5-VL's is per frame.
    budget_per_clip: bool = False

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def from_config(cls, config: dict, budget_per_clip: bool = False) -> VisionGrid:
        """From a preprocessor_config.json / video_preprocessor_config.json dict (both spellings of the pixel
        budget: transformers 5's `size.shortest_edge/longest_edge` and the older `min_pixels/max_pixels`)."""
        size = config.get("size") or {}
        default = cls()
        return cls(
            patch_size=int(config.get("patch_size", default.patch_size)),
            temporal_patch_size=int(config.get("temporal_patch_size", default.temporal_patch_size)),
            merge_size=int(config.get("merge_size", default.merge_size)),
            image_mean=tuple(float(v) for v in config.get("image_mean", default.image_mean)),
            image_std=tuple(float(v) for v in config.get("image_std", default.image_std)),
            min_pixels=int(config.get("min_pixels") or size.get("shortest_edge") or default.min_pixels),
            max_pixels=int(config.get("max_pixels") or size.get("longest_edge") or default.max_pixels),
            budget_per_clip=budget_per_clip,
        )

    @classmethod
    def from_file(cls, path: Path, budget_per_clip: bool = False) -> VisionGrid:
        return cls.from_config(json.loads(Path(path).read_text(encoding="utf-8")), budget_per_clip)


def fitted_size(height: int, width: int, frames: int, grid: VisionGrid) -> tuple[int, int]:
    """(height, width) in multiples of the merged patch, inside the pixel budget, aspect kept: the rule of
    transformers' `smart_resize` (the Qwen-VL reference), applied per frame or per clip as the checkpoint says."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    padded_frames = -(-frames // grid.temporal_patch_size) * grid.temporal_patch_size
    share = padded_frames if grid.budget_per_clip else 1
    factor = grid.factor
    if height < factor or width < factor:  # tiny inputs grow to one merged patch first
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    return smart_resize(height, width, factor, grid.min_pixels // share, grid.max_pixels // share)


def patchify(frames: np.ndarray, grid: VisionGrid) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """uint8 (count, height, width, 3) frames -> float32 (t*h*w, 3*tp*p*p) patches and the grid (t, h, w).

    A clip whose frame count is not a multiple of the temporal patch repeats its last frame, as the reference
    processors do. Rows run over time groups, then merge windows row by row, then the patches of each window."""
    count, height, width, _ = frames.shape
    new_height, new_width = fitted_size(height, width, count, grid)
    if (new_height, new_width) != (height, width):
        frames = np.stack(
            [np.asarray(Image.fromarray(f).resize((new_width, new_height), Image.BICUBIC)) for f in frames]
        )
    pad = -count % grid.temporal_patch_size
    if pad:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    mean = torch.tensor(grid.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(grid.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    pixels = (torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    p, m, tp = grid.patch_size, grid.merge_size, grid.temporal_patch_size
    t, h, w = pixels.shape[0] // tp, new_height // p, new_width // p
    # (t, tp, c, h/m, m, p, w/m, m, p) -> (t, h/m, w/m, m, m, c, tp, p, p)
    patches = pixels.reshape(t, tp, 3, h // m, m, p, w // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(t * h * w, 3 * tp * p * p).contiguous(), (t, h, w)


def unpatchify(patches: torch.Tensor, grid_thw: tuple[int, int, int], grid: VisionGrid) -> torch.Tensor:
    """The inverse of `patchify`'s layout: (t*tp, 3, height, width) normalised pixels (for tests and checks)."""
    t, h, w = grid_thw
    p, m, tp = grid.patch_size, grid.merge_size, grid.temporal_patch_size
    blocks = patches.reshape(t, h // m, w // m, m, m, 3, tp, p, p).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return blocks.reshape(t * tp, 3, h * p, w * p)
