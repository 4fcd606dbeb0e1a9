"""Frame-window planning: which source frames make each training window. Pure functions, no I/O.

WAN's VAE compresses time by 4 and keeps the first frame on its own, so a clip must have 4n+1 frames.
Windows are planned on the clip *resampled to the target frame rate* (the model's native rate unless the
config says otherwise), so motion speed in training matches what the model generates: each target frame
shows the source frame nearest in presentation time. A constant-rate clip does that by formula; a
variable-rate clip (phones, screen captures) by its timestamps.

Short clips (fewer resampled frames than the window): the clip becomes one window of the largest 4n+1
length it holds, and lands in that shorter frame bucket; it is skipped only when that length is below
`min_frames`. Images always make one 1-frame window.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

EXTRACTION_MODES = ("head", "chunk", "slide", "uniform", "full")


@dataclass(frozen=True)
class Window:
    start: int  # first frame, in target-rate frames
    length: int  # 4n+1


def largest_4n1(frames: int) -> int:
    """The largest 4n+1 that is at most `frames` (0 when frames < 1)."""
    return 0 if frames < 1 else (frames - 1) // 4 * 4 + 1


def is_4n1(frames: int) -> bool:
    return frames >= 1 and (frames - 1) % 4 == 0


def resampled_source_indices(source_frames: int, source_fps: float, target_fps: float) -> list[int]:
    """For each frame of the clip at `target_fps`, the source frame shown at that time.

    Target frame i is at time i / target_fps; the source frame there is round(i * source_fps / target_fps).
    A clip of unknown rate (0) is taken frame by frame.
    """
    if source_frames < 1:
        return []
    if source_fps <= 0 or target_fps <= 0:
        return list(range(source_frames))
    ratio = source_fps / target_fps
    indices = []
    i = 0
    while (index := round(i * ratio)) < source_frames:
        indices.append(index)
        i += 1
    return indices


def timestamp_source_indices(timestamps: list[float] | tuple[float, ...], target_fps: float) -> list[int]:
    """For each frame at `target_fps`, the source frame whose presentation time is nearest (ties: the earlier).

    `timestamps` are the shown frames' times in seconds, sorted, from 0. Target frame i is at i / target_fps;
    the resampled clip ends where the nearest frame would lie past the last frame's half interval, as the
    formula's `round(i * ratio) < frames` does for a constant rate (to which this reduces, ties aside).
    """
    count = len(timestamps)
    if count < 2 or target_fps <= 0:
        return list(range(count))
    end = timestamps[-1] + (timestamps[-1] - timestamps[-2]) / 2
    indices = []
    i = 0
    while (time := i / target_fps) < end:
        after = bisect_left(timestamps, time)
        if after == 0:
            index = 0
        elif after == count or time - timestamps[after - 1] <= timestamps[after] - time:
            index = after - 1
        else:
            index = after
        indices.append(index)
        i += 1
    return indices


def plan_windows(
    available: int, window: int, mode: str, max_windows: int = 1, stride: int = 1, min_frames: int = 1
) -> list[Window]:
    """Windows over a clip of `available` frames (at the target rate).

    head: the first window. chunk: consecutive non-overlapping windows from the start. slide: windows every
    `stride` frames. uniform: windows spread evenly over the clip. full: the whole clip as one window
    (its largest 4n+1 prefix, not capped by `window`). chunk, slide and uniform keep at most `max_windows`.
    """
    if mode not in EXTRACTION_MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; choose one of {', '.join(EXTRACTION_MODES)}")
    if not is_4n1(window):
        raise ValueError(f"window length {window} is not 4n+1")
    if mode == "full" or available < window:
        length = largest_4n1(available)
        return [Window(0, length)] if length >= max(min_frames, 1) else []
    last_start = available - window
    if mode == "head":
        starts = [0]
    elif mode == "chunk":
        starts = list(range(0, last_start + 1, window))
    elif mode == "slide":
        starts = list(range(0, last_start + 1, max(stride, 1)))
    else:  # uniform
        count = max(1, min(max_windows, last_start + 1))
        starts = sorted({round(k * last_start / (count - 1)) for k in range(count)}) if count > 1 else [0]
    return [Window(start, window) for start in starts[: max(max_windows, 1)]]


def window_source_indices(resampled: list[int], window: Window) -> list[int]:
    """The source frame indices of one window."""
    return resampled[window.start : window.start + window.length]
