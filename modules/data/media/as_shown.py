"""Bringing decoded frames to what a viewer sees: display matrix (rotation and mirror), pixel aspect, rate test.

Pure functions on sizes, angles, timestamps and uint8 frame arrays; the readers (video_readers.py) call
them so that decord and PyAV return the same, displayed frames.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

# A rate is constant when every frame lies within this fraction of a frame interval of a uniform grid.
# Container time bases round timestamps (1/1000 s in Matroska: 33/33/34 ms at 30 fps), so exact equality
# would call most WebM files variable; a quarter frame is far above rounding and far below a dropped frame.
CONSTANT_RATE_TOLERANCE = 0.25


def normalise_rotation(degrees: float | None) -> int:
    """A display-matrix angle (counter-clockwise, any sign) as 0, 90, 180 or 270."""
    if not degrees:
        return 0
    return int(round(degrees / 90.0)) * 90 % 360


def display_transform(matrix) -> tuple[int, bool]:
    """(counter-clockwise rotation, mirrored) of a display matrix (9 int32 values, FFmpeg's layout, 16.16 fixed point).

    A player shows the stored frame mirrored left-right first (when the matrix's determinant is negative),
    then turned by the angle. Negating the first row takes the mirror out of the matrix; what remains is a pure
    rotation [[cos, -sin], [sin, cos]], read back with atan2. FFmpeg's av_display_rotation_get (PyAV's
    frame.rotation, which decord applies) reads the angle without taking the mirror out: 180 for a left-right
    mirror. Checked against ffmpeg's autorotate for every rotation and flip in tests/test_data_as_shown.py.
    """
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    mirrored = a * d - b * c < 0
    if mirrored:
        a, b = -a, -b
    if a == 0 and b == 0:
        return 0, False
    return normalise_rotation(math.degrees(math.atan2(-b, a))), mirrored


def mirror_words(rotation: int, mirrored: bool) -> str:
    """The report's words for a display transform: "rotated 90 and mirrored", "mirrored left-right", ..."""
    if not mirrored:
        return f"rotated {rotation} (display matrix, counter-clockwise)" if rotation else ""
    if rotation == 0:
        return "mirrored left-right (display matrix)"
    if rotation == 180:  # a left-right mirror turned upside down is a top-bottom mirror
        return "mirrored top-bottom (display matrix)"
    how = f"mirrored left-right, then turned {rotation} counter-clockwise"
    return f"rotated {rotation} and mirrored (display matrix: {how})"


def displayed_size(stored_width: int, stored_height: int, pixel_aspect: Fraction, rotation: int) -> tuple[int, int]:
    """(width, height) as shown: the stored width scaled by the pixel aspect, then turned by the rotation.

    Players stretch the width (720x480 at 32:27 is shown 853x480), so the height keeps its pixel count.
    """
    width = max(1, round(stored_width * pixel_aspect)) if pixel_aspect != 1 else stored_width
    return (stored_height, width) if rotation in (90, 270) else (width, stored_height)


def pixel_aspect_of(value) -> Fraction:
    """A stream's sample aspect ratio; unknown, zero or absurd values mean square pixels."""
    try:
        ratio = Fraction(value) if value else Fraction(1)
    except (TypeError, ValueError, ZeroDivisionError):
        return Fraction(1)
    return ratio if Fraction(1, 16) <= ratio <= 16 else Fraction(1)


def rotate(frames: np.ndarray, rotation: int) -> np.ndarray:
    """(count, H, W, 3) turned counter-clockwise by `rotation` degrees (np.rot90 turns counter-clockwise)."""
    return np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(1, 2))) if rotation else frames


def resize_uint8(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(count, H, W, 3) uint8 scaled to (count, height, width, 3) with antialiased bilinear filtering."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    video = F.interpolate(video, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return video.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def orient(frames: np.ndarray, rotation: int, mirrored: bool, applied: int = 0) -> np.ndarray:
    """Stored frames as the display matrix shows them, for a reader that already turned them by `applied`.

    The reader's turn is undone first (a view, no copy), then the mirror and the rotation are applied:
    one copy at most, and none for an upright file.
    """
    if applied == rotation and not mirrored:
        return frames
    if applied:
        frames = np.rot90(frames, k=-(applied // 90), axes=(1, 2))
    if mirrored:
        frames = frames[:, :, ::-1]
    return rotate(frames, rotation) if rotation else np.ascontiguousarray(frames)


def to_displayed(
    frames: np.ndarray,
    width: int,
    height: int,
    rotation: int,
    already_rotated: bool,
    mirrored: bool = False,
    applied_rotation: int | None = None,
    stretch: bool = True,
) -> np.ndarray:
    """Frames as shown: oriented by the display matrix (less what the reader applied), then scaled to the displayed
    size (the pixel aspect). `already_rotated`: the reader turned them by `applied_rotation` (default `rotation`).
    `stretch=False` leaves the pixel aspect to the caller, who resizes once to the bucket (buckets.resize_and_crop)."""
    applied = (rotation if applied_rotation is None else applied_rotation) if already_rotated else 0
    frames = orient(frames, rotation, mirrored, applied)
    if stretch and frames.shape[1:3] != (height, width):
        frames = resize_uint8(frames, width, height)
    return frames


def is_constant_rate(timestamps: list[float]) -> bool:
    """True when the frames sit on a uniform grid from the first to the last, within the tolerance."""
    if len(timestamps) < 3:
        return True
    times = np.asarray(timestamps, dtype=np.float64)
    interval = (times[-1] - times[0]) / (len(times) - 1)
    if interval <= 0:
        return False
    grid = times[0] + interval * np.arange(len(times))
    return bool(np.abs(times - grid).max() <= CONSTANT_RATE_TOLERANCE * interval)


def rate_range(timestamps: list[float]) -> tuple[float, float]:
    """The lowest and highest instantaneous rates (frames per second), from the gaps between frames."""
    gaps = np.diff(np.asarray(timestamps, dtype=np.float64))
    gaps = gaps[gaps > 0]
    return (float(1 / gaps.max()), float(1 / gaps.min())) if gaps.size else (0.0, 0.0)
