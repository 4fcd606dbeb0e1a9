"""Writes generated frames as MP4 (H.264), WebM (VP9) or a folder of PNGs, atomically.

Frames are piped as raw RGB into an ffmpeg process: imageio-ffmpeg's bundled binary when present (so a
pip install is enough), else an ffmpeg on PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from modules.util.atomic import atomic_path
from modules.util.errors import UserError

VIDEO_FORMATS = ("mp4", "webm", "png")
# Constant-rate-factor defaults (lower = better): visually near-lossless for H.264, good for VP9.
DEFAULT_QUALITY = {"mp4": 18, "webm": 30}
# The encoders' CRF ranges: libx264 takes 0..51, libvpx-vp9 0..63.
QUALITY_RANGE = {"mp4": (0, 51), "webm": (0, 63)}
ENCODERS = {"mp4": "libx264", "webm": "libvpx-vp9"}


class VideoExportError(UserError, RuntimeError):
    """The video cannot be written (no encoder, a failing ffmpeg); the message says what to install or change."""


class VideoSettingsError(UserError, ValueError):
    """A format, fps or quality (CRF) a video cannot be written with; the message names the allowed values."""


def find_ffmpeg() -> str:
    """The ffmpeg executable: imageio-ffmpeg's (honours IMAGEIO_FFMPEG_EXE), else `ffmpeg` on PATH."""
    reasons = []
    try:
        import imageio_ffmpeg

        candidate = imageio_ffmpeg.get_ffmpeg_exe()
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
        reasons.append(
            f"imageio-ffmpeg named {candidate!r}, which is not an executable file"
            + (" (set by IMAGEIO_FFMPEG_EXE)" if os.environ.get("IMAGEIO_FFMPEG_EXE") else "")
        )
    except ImportError:
        reasons.append("imageio-ffmpeg is not installed")
    except RuntimeError as error:  # imageio-ffmpeg found no binary of its own
        reasons.append(f"imageio-ffmpeg has no binary ({error})")
    system = shutil.which("ffmpeg")
    if system:
        return system
    reasons.append("no 'ffmpeg' on PATH")
    raise VideoExportError(
        "Cannot write video: no ffmpeg found. Found: " + "; ".join(reasons) + ". "
        "Fix: `pip install imageio-ffmpeg` (ships ffmpeg), or install ffmpeg and put it on PATH"
        " (or point IMAGEIO_FFMPEG_EXE at an ffmpeg binary)."
    )


@functools.lru_cache(maxsize=8)
def _ffmpeg_report(ffmpeg: str) -> tuple[str, str]:
    """(first line of `ffmpeg -version`, the `-encoders` listing); cached, both are fixed per binary."""
    try:
        version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, timeout=30)
        encoders = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VideoExportError(
            f"Cannot run {ffmpeg} ({error}). Fix: `pip install imageio-ffmpeg`, or point "
            "IMAGEIO_FFMPEG_EXE / PATH at a working ffmpeg."
        ) from None
    lines = version.stdout.strip().splitlines()
    return (lines[0] if lines else "ffmpeg (unknown version)"), encoders.stdout


def check_encoder(format: str = "mp4") -> str:
    """Preflight before expensive sampling: the encoder for `format` exists and works. Returns its version.

    Raises VideoExportError that says what is missing and how to fix it. PNG needs only Pillow.
    """
    if format not in VIDEO_FORMATS:
        raise VideoSettingsError(f"video format {format!r} is unknown; choose one of {', '.join(VIDEO_FORMATS)}")
    if format == "png":
        import PIL

        return f"Pillow {PIL.__version__}"
    ffmpeg = find_ffmpeg()
    version, encoders = _ffmpeg_report(ffmpeg)
    encoder = ENCODERS[format]
    if encoder not in encoders.split():
        raise VideoExportError(
            f"Cannot write {format}: {ffmpeg} ({version}) has no {encoder} encoder. Fix: `pip install imageio-ffmpeg` "
            f"(its ffmpeg has libx264 and libvpx-vp9) and unset IMAGEIO_FFMPEG_EXE, install an ffmpeg built with "
            f"{encoder}, or choose another format (png needs no encoder)."
        )
    return version


def encoder_version(format: str) -> str:
    """What wrote a file of `format`, for the sidecar (e.g. "ffmpeg version 7.0 ... (libx264)")."""
    version = check_encoder(format)
    return version if format == "png" else f"{version} ({ENCODERS[format]})"


def as_uint8_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate (F, H, W, 3) uint8 and return it as a C-contiguous numpy array."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(
            f"frames must be uint8 (0..255), got {frames.dtype}; convert with (x * 255).round().clip(0, 255)"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (frames, height, width, 3), got {frames.shape}")
    return np.ascontiguousarray(frames)


def write_video(
    frames: np.ndarray | torch.Tensor,
    path: str | Path,
    fps: float,
    *,
    format: str = "mp4",
    quality: int | None = None,
) -> Path:
    """Write `frames` to `path` (a file for mp4/webm, a folder for png). `quality` is the CRF (lower is better)."""
    if format not in VIDEO_FORMATS:
        raise VideoSettingsError(f"video format {format!r} is unknown; choose one of {', '.join(VIDEO_FORMATS)}")
    if fps <= 0:
        raise VideoSettingsError(f"fps must be positive, got {fps}")
    frames = as_uint8_frames(frames)
    path = Path(path)
    if format == "png":
        return _write_png_folder(frames, path)
    _, height, width, _ = frames.shape
    crf = DEFAULT_QUALITY[format] if quality is None else int(quality)
    low, high = QUALITY_RANGE[format]
    if not low <= crf <= high:
        raise VideoSettingsError(
            f"quality (CRF) {crf} is out of range for {format}: use {low}..{high} (lower is better)"
        )
    if format == "mp4":
        # yuv420p (what every player decodes) needs even sizes; faststart puts the index first for streaming.
        codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-movflags", "+faststart", "-f", "mp4"]
    else:
        # VP9 in constant-quality mode needs -b:v 0.
        codec = ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", str(crf), "-b:v", "0", "-f", "webm"]
    pad = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if height % 2 or width % 2 else []
    ffmpeg = find_ffmpeg()  # before any file is created: a missing encoder leaves nothing behind
    with atomic_path(path) as tmp:
        command = [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            str(fps),
            "-i",
            "-",
            *pad,
            *codec,
            str(tmp),
        ]
        result = subprocess.run(command, input=frames.tobytes(), capture_output=True)
        if result.returncode != 0:
            raise VideoExportError(
                f"ffmpeg failed writing {path} (exit {result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
    return path


def _write_png_folder(frames: np.ndarray, folder: Path) -> Path:
    """frame_00000.png, ... in a temp folder beside `folder`, then renamed into place (replacing an old one)."""
    from PIL import Image

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{index:05d}.png")
        os.chmod(tmp, 0o755)
        old = None
        if folder.exists():
            # A folder cannot be replaced in one rename; move the old one aside first, delete it after.
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
