"""Frames of a sample video (or of a folder of PNG frames), as PIL images, scaled down for the window. File
decoding only: the gallery calls it from a thread of its own, never from Tk's. No Tk here."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

MAX_FRAMES = 241  # a long sample is shown up to here (10 s at 24 fps)


def decode_frames(path: Path, max_side: int | None = None, limit: int = MAX_FRAMES) -> tuple[list[Image.Image], float]:
    """(frames, frames per second) of `path`; each frame fits in max_side x max_side when given."""
    path = Path(path)
    fps = 16.0
    if path.is_dir():
        images = [Image.open(f).convert("RGB") for f in sorted(path.glob("*.png"))[:limit]]
    else:
        import av

        images = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or fps)
            for frame in container.decode(stream):
                images.append(frame.to_image())
                if len(images) >= limit:
                    break
    if max_side:
        for image in images:
            image.thumbnail((max_side, max_side))
    return images, fps
