"""Resolution buckets and the resize/crop into them.

Every clip keeps (close to) its aspect ratio at about `target_area` pixels, with both sides a multiple of
what the model needs (VAE stride x patch size: 32 px for TI2V-5B, 16 px for A14B). Clips with the same
(frames, height, width) share a bucket, and a batch holds one bucket, so no clip is padded or squashed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True, order=True)
class Bucket:
    frames: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"


def resolution_bucket(width: int, height: int, target_area: int, multiple: int) -> tuple[int, int]:
    """(width, height) near `target_area` pixels with the source's aspect ratio, each a multiple of `multiple`."""
    aspect = width / height
    ideal_width = math.sqrt(target_area * aspect)
    ideal_height = ideal_width / aspect
    return (
        max(multiple, round(ideal_width / multiple) * multiple),
        max(multiple, round(ideal_height / multiple) * multiple),
    )


def resize_and_crop(
    frames: np.ndarray, width: int, height: int, shown_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """uint8 (frames, H, W, 3) -> float32 (3, frames, height, width) in [-1, 1].

    Scaled (antialiased bilinear) so the clip covers the bucket, then centre-cropped: nothing is stretched.
    `shown_size` (width, height): the frames are shown at another aspect (non-square pixels), so they are
    scaled from the stored size straight to the size covering the bucket at the shown aspect: one resize.
    """
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    stored_size = video.shape[-2:]
    source_width, source_height = shown_size or (stored_size[1], stored_size[0])
    scale = max(width / source_width, height / source_height)
    scaled_height = max(height, round(source_height * scale))
    scaled_width = max(width, round(source_width * scale))
    if (scaled_height, scaled_width) != tuple(stored_size):
        video = F.interpolate(
            video, size=(scaled_height, scaled_width), mode="bilinear", antialias=True, align_corners=False
        )
    top = (scaled_height - height) // 2
    left = (scaled_width - width) // 2
    video = video[:, :, top : top + height, left : left + width]
    return (video / 127.5 - 1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()
