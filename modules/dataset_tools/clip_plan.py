"""Which frame ranges of a source become clips: shots, a gap from each cut, length bounds. Pure functions.

Ranges are [start, end) in shown frames (what a player shows, as the data pipeline counts them). A shot
boundary found by the detector is a cut; clips keep `gap_frames` away from every cut (a transition's
blended frames or a detector a frame late would otherwise start a clip with the previous shot), never from
the file's own start and end. Shots longer than the maximum become consecutive clips of the maximum length;
pieces shorter than the minimum are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modules.data.clips.frame_windows import is_4n1, resampled_source_indices


@dataclass(frozen=True)
class LengthBounds:
    """Clip length in source frames, from seconds or from training frames at the trained rate."""

    min_frames: int
    max_frames: int | None  # None: no upper bound


def bounds_from_seconds(source_fps: float, min_seconds: float, max_seconds: float | None) -> LengthBounds:
    # A small tolerance so 2.0 s at 30 fps is 60 frames, not 61 by float rounding.
    low = max(1, math.ceil(min_seconds * source_fps - 1e-6))
    high = None if max_seconds is None else max(low, math.floor(max_seconds * source_fps + 1e-6))
    return LengthBounds(low, high)


def bounds_from_training_frames(
    source_fps: float, trained_fps: float, min_frames: int, max_frames: int | None
) -> LengthBounds:
    """Source-frame bounds such that a clip gives at least `min_frames` (and, when set, at most `max_frames`)
    frames once resampled to `trained_fps` exactly as the data pipeline resamples (frame_windows.py)."""
    for name, value in (("min", min_frames), ("max", max_frames)):
        if value is not None and not is_4n1(value):
            raise ValueError(f"--{name}-frames {value} is not 4n+1 (WAN's VAE needs 1, 5, 9, ..., 81 frames)")

    def trained(count: int) -> int:
        return len(resampled_source_indices(count, source_fps, trained_fps))

    low = 1
    while trained(low) < min_frames:
        low += 1
    high = None
    if max_frames is not None:
        high = low
        while trained(high + 1) <= max_frames:
            high += 1
    return LengthBounds(low, high)


def plan_clips(shots: list[tuple[int, int]], total_frames: int, bounds: LengthBounds, gap_frames: int = 0):
    """[start, end) clip ranges from the detector's shots (covering the file), in order."""
    clips = []
    for start, end in shots:
        if start > 0:  # a cut before this shot
            start += gap_frames
        if end < total_frames:  # a cut after it
            end -= gap_frames
        piece_start = start
        while end - piece_start >= bounds.min_frames:
            length = end - piece_start if bounds.max_frames is None else min(bounds.max_frames, end - piece_start)
            clips.append((piece_start, piece_start + length))
            piece_start += length
    return clips
