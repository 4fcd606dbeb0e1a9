"""A small synthetic video set for the demo and the tests: moving shapes with captions.

Several lengths, frame rates and aspect ratios (so windows, fps resampling, short clips and buckets all
get exercised), a few still images, and one caption .txt per file. Generated on demand, never committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modules.util.video_export import write_video

COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "yellow": (230, 210, 40), "white": (240, 240, 240)}
BACKGROUNDS = {"blue": (20, 40, 140), "purple": (90, 30, 120), "grey": (90, 90, 90)}


@dataclass(frozen=True)
class DemoClip:
    name: str
    shape: str  # "circle" or "square"
    color: str
    background: str
    width: int
    height: int
    frames: int  # 1 = a still image (written as PNG)
    fps: float
    direction: str = "left to right"


DEMO_CLIPS = (
    DemoClip("circle_wide", "circle", "red", "blue", 96, 64, 48, 24, "left to right"),
    DemoClip("square_tall", "square", "green", "purple", 64, 96, 60, 30, "top to bottom"),
    DemoClip("circle_square_slow", "circle", "yellow", "grey", 80, 80, 20, 12, "right to left"),
    DemoClip("square_short", "square", "white", "blue", 96, 64, 9, 24, "left to right"),
    DemoClip("still_circle", "circle", "red", "purple", 80, 64, 1, 0),
    DemoClip("still_square", "square", "yellow", "blue", 64, 80, 1, 0),
)


def moving_shape_frames(clip: DemoClip) -> np.ndarray:
    """uint8 (frames, height, width, 3): a shape crossing a vertical gradient background."""
    height, width = clip.height, clip.width
    gradient = np.linspace(0.6, 1.0, height, dtype=np.float32)[:, None, None]
    background = (gradient * np.array(BACKGROUNDS[clip.background], dtype=np.float32)).repeat(width, axis=1)
    ys, xs = np.mgrid[0:height, 0:width]
    radius = min(width, height) / 6
    frames = []
    for index in range(clip.frames):
        progress = index / max(clip.frames - 1, 1) if clip.frames > 1 else 0.5
        if clip.direction == "top to bottom":
            cx, cy = width / 2, radius + progress * (height - 2 * radius)
        elif clip.direction == "right to left":
            cx, cy = width - radius - progress * (width - 2 * radius), height / 2
        else:
            cx, cy = radius + progress * (width - 2 * radius), height / 2
        if clip.shape == "circle":
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        else:
            inside = (abs(xs - cx) <= radius) & (abs(ys - cy) <= radius)
        frame = background.copy()
        frame[inside] = COLORS[clip.color]
        frames.append(frame)
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def caption(clip: DemoClip) -> str:
    if clip.frames == 1:
        return f"a {clip.color} {clip.shape} on a {clip.background} gradient"
    return f"a {clip.color} {clip.shape} moves from {clip.direction} over a {clip.background} gradient"


def write_clip(clip: DemoClip, folder: Path) -> Path:
    frames = moving_shape_frames(clip)
    if clip.frames == 1:
        from PIL import Image

        path = folder / f"{clip.name}.png"
        Image.fromarray(frames[0]).save(path)
    else:
        path = write_video(frames, folder / f"{clip.name}.mp4", clip.fps, quality=12)
    path.with_suffix(".txt").write_text(caption(clip) + "\n", encoding="utf-8")
    return path


def make_demo_data(out: Path, clips: tuple[DemoClip, ...] = DEMO_CLIPS) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [write_clip(clip, out) for clip in clips]
