"""Reading media files as a viewer sees them: probe (shown frames, rate, displayed size) and decode chosen frames.

The probe uses PyAV, which reports what decord cannot (display rotation, pixel aspect, timestamps, edit
lists), and decord only when PyAV cannot open a file. Frames are decoded with decord (faster), with PyAV as
the fallback when decord is missing or cannot read a file, and with PyAV only for files with an edit list
(decord numbers their frames inconsistently). Both readers return the displayed frames (video_readers.py).
Images are read with Pillow (image_io.py) and count as one-frame videos; animated GIF/WebP/PNG are videos
read with Pillow (neither reader decodes them all). A file whose extension is not listed here is used when
its content is an image (Pillow) or a video (FFmpeg), see `sniff_media`. Every failure becomes a MediaError
that names the file, so the pipeline can skip it with a counted warning instead of crashing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modules.data.media import video_readers
from modules.data.media.image_io import animation_frames, animation_of, load_image
from modules.data.media.media_info import MediaError, MediaInfo

__all__ = ["MediaError", "MediaInfo", "probe", "read_frames", "read_window", "is_media", "is_image", "sniff_media"]

# What cameras, phones and downloads write: AVCHD and broadcast MPEG-TS (.mts .m2ts .ts), 3GPP phones.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mts", ".m2ts", ".ts", ".3gp"})
# .gif, .webp and .png may be animated: decided by content (image_io.animation_of).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CAPTION_EXTENSION = ".txt"  # never sniffed: FFmpeg's tty demuxer would open any text file as "video"
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})  # FFmpeg's text-art "video": not footage
BACKENDS = ("auto", "decord", "pyav")


def is_media(path: Path) -> bool:
    """By extension only; see sniff_media for files whose extension is not listed."""
    return path.suffix.lower() in VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def sniff_media(path: Path) -> str | None:
    """ "image" or "video" when the content is one (whatever the extension), None otherwise. Reads headers only."""
    if path.suffix.lower() == CAPTION_EXTENSION:
        return None
    if is_media(path):
        return "image" if is_image(path) else "video"
    if _pillow_opens(path):
        return "image"
    try:
        import av

        with av.open(str(path)) as container:
            streams = [s for s in container.streams.video if s.codec_context.name not in TEXT_CODECS]
            return "video" if streams else None
    except Exception:  # PyAV's FFmpegError family, ImportError: not a video we can read
        return None


def _pillow_opens(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def _is_image_content(path: Path) -> bool:
    """Images by extension, and files with an unlisted extension whose content Pillow reads."""
    return is_image(path) or (not is_media(path) and _pillow_opens(path))


def probe(path: Path, backend: str = "auto") -> MediaInfo:
    """Shown frame count, rate, displayed size and what was corrected, decoding one frame at most.

    Metadata comes from PyAV whatever the backend (decord cannot report rotation, pixel aspect or edit
    lists); decord probes only when PyAV cannot open the file, and never under backend "pyav".
    """
    _check_backend(backend)
    _check_not_empty(path)
    if _is_image_content(path):
        animation = animation_of(path)
        if animation is not None:
            return video_readers.animation_info(animation)
        shown = load_image(path)
        height, width = shown.pixels.shape[:2]
        return MediaInfo(1, 0.0, width, height, True, corrections=shown.corrections, frame_rule=shown.frame_rule)
    if backend == "pyav":
        return _as_media_error(path, "PyAV", video_readers.probe_pyav)
    try:
        return _as_media_error(path, "PyAV", video_readers.probe_pyav)
    except MediaError as pyav_error:
        try:
            return _as_media_error(path, "decord", video_readers.probe_decord)
        except MediaError as decord_error:
            raise _unreadable(path, pyav_error, decord_error) from None


def read_frames(path: Path, indices: list[int], backend: str = "auto", info: MediaInfo | None = None) -> np.ndarray:
    """The shown frames at `indices` (any order, repeats allowed) as uint8 (count, height, width, 3) RGB.

    `info` is the file's probe result (probed here when not given); indices count shown frames.
    """
    return _read(path, indices, backend, info, stretch=True)


def read_window(
    path: Path, indices: list[int], width: int, height: int, backend: str = "auto", info: MediaInfo | None = None
):
    """The shown frames at `indices` covering a (width, height) bucket, centre-cropped: float32 (3, count, height,
    width) in [-1, 1], as buckets.resize_and_crop of read_frames gives, but with one resize for non-square pixels
    (stored size straight to the bucket's cover size at the shown aspect, not stretched first and scaled again).
    """
    from modules.data.clips.buckets import resize_and_crop

    info = info or probe(path, backend)
    frames = _read(path, indices, backend, info, stretch=False)
    shown = (info.width, info.height) if info.pixel_aspect != 1 else None
    return resize_and_crop(frames, width, height, shown_size=shown)


def _read(path: Path, indices: list[int], backend: str, info: MediaInfo | None, stretch: bool) -> np.ndarray:
    _check_backend(backend)
    _check_not_empty(path)
    info = info or probe(path, backend)
    indices = list(indices)
    if info.is_image:
        return np.stack([load_image(path).pixels] * len(indices))
    if info.animated:
        return animation_frames(path, indices)

    def by_decord(p):
        return video_readers.read_decord(p, indices, info, stretch)

    def by_pyav(p):
        return video_readers.read_pyav(p, indices, info, stretch)

    not_for_decord = _decord_cannot_read(info)
    if not_for_decord:
        if backend == "decord":
            raise MediaError(path, not_for_decord, "read it with the 'auto' or 'pyav' backend")
        return _as_media_error(path, "PyAV", by_pyav)
    if backend == "pyav":
        return _as_media_error(path, "PyAV", by_pyav)
    try:
        return _as_media_error(path, "decord", by_decord)
    except MediaError as decord_error:
        if backend == "decord":
            raise
        try:
            return _as_media_error(path, "PyAV", by_pyav)
        except MediaError as pyav_error:
            raise _unreadable(path, decord_error, pyav_error) from None


# ---- helpers -----------------------------------------------------------------------------------
# Containers decord seeks into inexactly: its batch read of an MPEG-TS (AVCHD .mts/.m2ts, .ts) returns other
# frames than asked for (tests/test_data_formats.py), as it has no index to seek by. PyAV reads them.
DECORD_INEXACT_CONTAINERS = frozenset({"mpegts"})


def _decord_cannot_read(info: MediaInfo) -> str:
    """Why decord must not read this file (empty when it may)."""
    if info.hidden_frames:
        return (
            f"decord cannot number the frames of a file with an edit list consistently "
            f"({info.hidden_frames} hidden frame(s) before the visible start)"
        )
    if info.video_filter:
        return f"decord cannot apply the filter this file needs to look as played ({info.video_filter})"
    if info.container in DECORD_INEXACT_CONTAINERS:
        return f"decord seeks into {info.container} files inexactly (it returns other frames than asked for)"
    return ""


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _unreadable(path: Path, first: MediaError, second: MediaError) -> MediaError:
    return MediaError(
        path,
        f"cannot be read as a video ({first.reason}; {second.reason})",
        "re-encode it (for example `ffmpeg -i in.mp4 -c:v libx264 out.mp4`) or remove it",
    )


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
