"""Reading a photo or still as a viewer shows it: 8-bit RGB, EXIF orientation applied, transparency composited.

- EXIF orientation (a phone photo stored sideways with "rotate 90" in its tags) is applied as viewers do.
- 16-bit greyscale (Pillow's "I;16"/"I" modes) is scaled to 8 bits; Pillow's own conversion clips every
  value above 255, which turns the image into two levels. (Pillow already reduces 16-bit RGB/RGBA PNGs.)
- Transparent pixels (RGBA, LA, a palette or greyscale with a transparent colour) are composited on white,
  the page colour transparent images are shown on in browsers and documents, so a cut-out trains as the
  object on a plain light background; the colour values stored under transparent pixels are arbitrary
  (often black or leftovers) and are never used. An image whose alpha is fully opaque is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modules.data.media_info import MediaError

ALPHA_BACKGROUND = (255, 255, 255)
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ShownImage:
    pixels: np.ndarray  # uint8 (height, width, 3)
    corrections: tuple[str, ...]
    frame_rule: tuple[tuple[str, str], ...]  # cache-key parts: what differs from cache format 1's plain convert("RGB")


def load_image(path: Path) -> ShownImage:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            orientation = image.getexif().get(ORIENTATION_TAG, 1)
            shown = ImageOps.exif_transpose(image) if orientation not in (None, 1) else image.copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None
    corrections, rule = [], []
    if orientation not in (None, 1):
        corrections.append(f"EXIF orientation {orientation}: turned as shown")
        rule.append(("exif_orientation", str(orientation)))
    if shown.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(shown, dtype=np.float64)
        # "I;16*" holds 0..65535; "I" (32-bit) comes from 16-bit files in older Pillow: same range.
        grey = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        corrections.append("16-bit greyscale scaled to 8 bits")
        rule.append(("bit_depth", "16"))
        return ShownImage(np.repeat(grey[:, :, None], 3, axis=2), tuple(corrections), tuple(rule))
    if _has_transparency(shown):
        rgba = np.asarray(shown.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        if alpha.min() < 1.0:
            background = np.array(ALPHA_BACKGROUND, dtype=np.float32)
            pixels = np.round(rgba[:, :, :3] * alpha + background * (1.0 - alpha)).astype(np.uint8)
            corrections.append("transparent areas composited on white")
            rule.append(("alpha", "white"))
            return ShownImage(pixels, tuple(corrections), tuple(rule))
    return ShownImage(np.asarray(shown.convert("RGB")), tuple(corrections), tuple(rule))


def _has_transparency(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
