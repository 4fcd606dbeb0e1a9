"""Reading a photo, still or animated image as a viewer shows it: 8-bit RGB, EXIF orientation applied,
transparency composited, an animation's frames at their own durations.

- EXIF orientation (a phone photo stored sideways with "rotate 90" in its tags) is applied as viewers do.
- 16-bit greyscale (Pillow's "I;16"/"I" modes) is scaled to 8 bits; Pillow's own conversion clips every
  value above 255, which turns the image into two levels. (Pillow already reduces 16-bit RGB/RGBA PNGs.)
- Transparent pixels (RGBA, LA, a palette or greyscale with a transparent colour) are composited on white,
  the page colour transparent images are shown on in browsers and documents, so a cut-out trains as the
  object on a plain light background; the colour values stored under transparent pixels are arbitrary
  (often black or leftovers) and are never used. An image whose alpha is fully opaque is unchanged.
- Animated GIF, WebP and PNG (APNG) are videos: every frame, shown for its own duration, as a browser plays
  it. They are read with Pillow whatever the video backend: FFmpeg (so PyAV) cannot decode animated WebP and
  decord cannot open GIF. Pillow composes each frame over the previous ones (GIF disposal, WebP blending), so
  a frame is the whole picture shown at that time. Durations under 20 ms count as 100 ms, as browsers play
  them (a GIF "0 ms" delay is shown at 10 fps). A multi-page TIFF is a document, not an animation: its
  first page is used, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modules.data.media.media_info import MediaError

ALPHA_BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
ORIENTATION_TAG = 0x0112
ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})
SHORTEST_FRAME_S = 0.02  # below this a browser shows a frame for BROWSER_DEFAULT_FRAME_S
BROWSER_DEFAULT_FRAME_S = 0.1


@dataclass(frozen=True)
class Animation:
    """An animated image's frames: how long each is shown, its size and its format (for the report)."""

    durations: tuple[float, ...]  # seconds
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class ShownImage:
    pixels: np.ndarray  # uint8 (height, width, 3)
    corrections: tuple[str, ...]
    frame_rule: tuple[tuple[str, str], ...]  # cache-key parts: what differs from cache format 1's plain convert("RGB")


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None


def is_animation(image) -> bool:
    return image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1


def animation_of(path: Path) -> Animation | None:
    """The frames' durations of an animated GIF/WebP/PNG, or None for a still image."""
    with _open(path) as image:
        if not is_animation(image):
            return None
        durations = []
        try:
            for index in range(image.n_frames):
                image.seek(index)
                image.load()  # WebP sets the duration when a frame is loaded
                seconds = (image.info.get("duration") or 0) / 1000
                durations.append(seconds if seconds >= SHORTEST_FRAME_S else BROWSER_DEFAULT_FRAME_S)
        except (OSError, ValueError, EOFError) as error:
            reason = f"animated {image.format}: frame {len(durations)} cannot be read ({error})"
            raise MediaError(path, reason) from None
        return Animation(tuple(durations), image.width, image.height, image.format)


def animation_frames(path: Path, indices: list[int]) -> np.ndarray:
    """The shown frames at `indices` of an animated image (composed, transparency on white), uint8 (n, H, W, 3)."""
    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    with _open(path) as image:
        try:
            for index in range(max(indices) + 1):
                image.seek(index)
                if index in wanted:
                    frames[index] = _shown_pixels(image.copy(), [], [])
        except (OSError, ValueError, EOFError) as error:
            raise MediaError(path, f"animated {image.format}: frame {index} cannot be read ({error})") from None
    return np.stack([frames[i] for i in indices])


def load_image(path: Path) -> ShownImage:
    from PIL import ImageOps

    try:
        with _open(path) as image:
            image.load()
            pages = getattr(image, "n_frames", 1) if image.format == "TIFF" else 1
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            shown = ImageOps.exif_transpose(image) if orientation not in (None, 1) else image.copy()
    except (OSError, ValueError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None
    corrections, rule = [], []
    if pages > 1:
        corrections.append(f"multi-page TIFF: the first of {pages} pages is used")
    if orientation not in (None, 1):
        corrections.append(f"EXIF orientation {orientation}: turned as shown")
        rule.append(("exif_orientation", str(orientation)))
    pixels = _shown_pixels(shown, corrections, rule)
    return ShownImage(pixels, tuple(corrections), tuple(rule))


def _shown_pixels(shown, corrections: list[str], rule: list[tuple[str, str]]) -> np.ndarray:
    """8-bit RGB of an opened image: 16-bit grey scaled, transparency composited on white (appends what it did)."""
    if shown.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(shown, dtype=np.float64)
        # "I;16*" holds 0..65535; "I" (32-bit) comes from 16-bit files in older Pillow: same range.
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        corrections.append("16-bit greyscale scaled to 8 bits")
        rule.append(("bit_depth", "16"))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if _has_transparency(shown):
        rgba = np.asarray(shown.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        if alpha.min() < 1.0:
            background = np.array(ALPHA_BACKGROUND, dtype=np.float32)
            pixels = np.round(rgba[:, :, :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
            corrections.append("transparent areas composited on white")
            rule.append(("alpha", "white"))
            return pixels
    return np.asarray(shown.convert("RGB"))


def _has_transparency(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
