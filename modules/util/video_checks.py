"""The static-video check: a sample whose frames barely change is flagged as frozen.

A LoRA that collapsed motion (or a sampler bug) still produces a plausible first frame, so a still video
is easy to miss when skimming samples; one number per video catches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_STATIC_THRESHOLD = 1.0


@dataclass(frozen=True)
class MotionCheck:
    # Mean absolute difference between consecutive frames on the 0..255 scale; None for a single frame.
    mean_frame_difference: float | None
    threshold: float
    frozen: bool | None  # None when there is nothing to compare (one frame)

    def as_dict(self) -> dict:
        return {
            "mean_frame_difference": self.mean_frame_difference,
            "threshold": self.threshold,
            "frozen": self.frozen,
            "rule": "frozen when the mean absolute difference between consecutive frames (0..255) is below threshold",
        }


def mean_frame_difference(frames: np.ndarray) -> float | None:
    """Mean over all consecutive frame pairs and pixels of |frame[i+1] - frame[i]|, for (F, H, W, C) uint8 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (frames, height, width, channels), got {frames.shape}")
    if frames.shape[0] < 2:
        return None
    total = 0.0
    # Pair by pair in int16: a whole-video int16 copy of a 121-frame 720p sample would be ~700 MB.
    for previous, current in zip(frames[:-1], frames[1:]):
        total += float(np.abs(current.astype(np.int16) - previous.astype(np.int16)).mean())
    return total / (frames.shape[0] - 1)


def check_motion(frames: np.ndarray, threshold: float = DEFAULT_STATIC_THRESHOLD) -> MotionCheck:
    difference = mean_frame_difference(frames)
    frozen = None if difference is None else difference < threshold
    return MotionCheck(mean_frame_difference=difference, threshold=float(threshold), frozen=frozen)
