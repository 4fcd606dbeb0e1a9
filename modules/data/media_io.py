"""Reading media files: probe (frame count, fps, size) and decode chosen frames.

Videos go through decord, with PyAV as the fallback when decord is missing or cannot read a file (decord
fails on some codecs and containers that FFmpeg via PyAV handles). Images are read with Pillow and count
as one-frame videos. Every failure becomes a MediaError that names the file, so the pipeline can skip it
with a counted warning instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
BACKENDS = ("auto", "decord", "pyav")


class MediaError(Exception):
    """A media file cannot be used; the message names the file and why."""

    def __init__(self, path: Path, reason: str, fix: str = ""):
        super().__init__(f"{path}: {reason}" + (f". Fix: {fix}" if fix else ""))
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class MediaInfo:
    frame_count: int
    fps: float  # 0 for images
    width: int
    height: int
    is_image: bool = False


def is_media(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def probe(path: Path, backend: str = "auto") -> MediaInfo:
    """Frame count, frame rate and size, without decoding the whole file."""
    _check_not_empty(path)
    if is_image(path):
        with _open_image(path) as image:
            return MediaInfo(1, 0.0, image.width, image.height, is_image=True)
    return _with_backends(path, backend, _probe_decord, _probe_pyav)


def read_frames(path: Path, indices: list[int], backend: str = "auto") -> np.ndarray:
    """The frames at `indices` (in any order, repeats allowed) as uint8 (count, height, width, 3) RGB."""
    _check_not_empty(path)
    if is_image(path):
        with _open_image(path) as image:
            frame = np.asarray(image.convert("RGB"))
        return np.stack([frame] * len(indices))
    return _with_backends(path, backend, lambda p: _read_decord(p, indices), lambda p: _read_pyav(p, indices))


# ---- backend choice ----------------------------------------------------------------------------
def _with_backends(path: Path, backend: str, decord_fn, pyav_fn):
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "pyav":
        return _as_media_error(path, "PyAV", pyav_fn)
    try:
        return _as_media_error(path, "decord", decord_fn)
    except MediaError as decord_error:
        if backend == "decord":
            raise
        try:
            return _as_media_error(path, "PyAV", pyav_fn)
        except MediaError as pyav_error:
            raise MediaError(
                path,
                f"cannot be read as a video ({decord_error.reason}; {pyav_error.reason})",
                "re-encode it (for example `ffmpeg -i in.mp4 -c:v libx264 out.mp4`) or remove it",
            ) from None


def _as_media_error(path: Path, backend: str, fn):
    try:
        return fn(path)
    except MediaError:
        raise
    except ImportError as error:
        raise MediaError(path, f"{backend} is not installed ({error})") from None
    except Exception as error:  # decord raises RuntimeError/DECORDError, PyAV its FFmpegError family
        raise MediaError(
            path, f"{backend}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None


def _check_not_empty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise MediaError(path, f"cannot be opened ({error.strerror})") from None
    if size == 0:
        raise MediaError(path, "the file is empty (0 bytes)")


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError) as error:
        raise MediaError(path, f"not a readable image ({error})") from None


# ---- decord ------------------------------------------------------------------------------------
def _decord_reader(path: Path):
    import decord

    return decord.VideoReader(str(path), num_threads=1)


def _probe_decord(path: Path) -> MediaInfo:
    reader = _decord_reader(path)
    count = len(reader)
    if count == 0:
        raise MediaError(path, "decord: the video has no frames")
    height, width = reader[0].shape[:2]
    return MediaInfo(count, float(reader.get_avg_fps()), int(width), int(height))


def _read_decord(path: Path, indices: list[int]) -> np.ndarray:
    reader = _decord_reader(path)
    return reader.get_batch(list(indices)).asnumpy()


# ---- PyAV --------------------------------------------------------------------------------------
def _probe_pyav(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(path, "PyAV: the file has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        count = stream.frames
        if count <= 0:  # some containers do not store a frame count: count the packets instead
            count = sum(1 for packet in container.demux(stream) if packet.size)
        if count <= 0:
            raise MediaError(path, "PyAV: the video has no frames")
        return MediaInfo(int(count), float(rate), stream.codec_context.width, stream.codec_context.height)


def _read_pyav(path: Path, indices: list[int]) -> np.ndarray:
    import av

    wanted = set(indices)
    last = max(indices)
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for position, frame in enumerate(container.decode(stream)):
            if position in wanted:
                frames[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
    missing = sorted(wanted - frames.keys())
    if missing:
        raise MediaError(
            path,
            f"PyAV: only {len(frames)} of the {len(wanted)} requested frames could be decoded "
            f"(frame {missing[0]} is missing; the file may be truncated)",
        )
    return np.stack([frames[i] for i in indices])
