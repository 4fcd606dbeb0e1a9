"""Writes one generated sample: the video (or PNG frames), the static check, and a JSON sidecar beside it.

The sidecar makes every sample reproducible and auditable without the config that made it: what was asked
(prompt, seed, settings, requested frames), what was made (actual frames, size, fps, duration) and how it
was written (format, quality, encoder version). The caller supplies the generation fields; this module
adds what it measured and wrote, so the file and the sidecar cannot disagree.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from modules.util.atomic import atomic_write
from modules.util.video_checks import MotionCheck, check_motion
from modules.util.video_export import DEFAULT_QUALITY, as_uint8_frames, encoder_version, write_video

log = logging.getLogger("wan_trainer.samples")
SIDECAR_VERSION = 1
SUFFIX = {"mp4": ".mp4", "webm": ".webm", "png": ""}


@dataclass(frozen=True)
class ExportedSample:
    path: Path
    sidecar: Path
    motion: MotionCheck
    record: dict


def video_path(destination: str | Path, format: str) -> Path:
    """`destination` with the format's suffix (a PNG folder has none): samples/x.mp4 -> samples/x.webm."""
    destination = Path(destination)
    stem = destination.name[: -len(destination.suffix)] if destination.suffix in (".mp4", ".webm") else destination.name
    return destination.with_name(stem + SUFFIX[format])


def sidecar_path(path: str | Path) -> Path:
    """samples/x.mp4 -> samples/x.json; a PNG folder samples/x -> samples/x.json."""
    path = Path(path)
    return path.with_suffix(".json") if path.suffix in (".mp4", ".webm") else path.with_name(path.name + ".json")


def write_sidecar(path: str | Path, record: dict) -> Path:
    """Atomically write `record` as JSON beside the video at `path`; returns the sidecar's path."""
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    target = sidecar_path(path)
    atomic_write(target, lambda file: file.write(text.encode("utf-8")))
    return target


def export_sample(
    frames: np.ndarray,
    destination: str | Path,
    *,
    fps: float,
    format: str = "mp4",
    quality: int | None = None,
    static_threshold: float,
    record: dict,
) -> ExportedSample:
    """Write `frames` and its sidecar. `record` holds the generation settings; export fields are added here."""
    frames = as_uint8_frames(frames)
    encoder = encoder_version(format)  # preflight: no encoder, no file and no sidecar
    path = write_video(frames, video_path(destination, format), fps, format=format, quality=quality)
    motion = check_motion(frames, static_threshold)
    count, height, width, _ = frames.shape
    full = {
        "sidecar_version": SIDECAR_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "file": path.name,
        **record,
        "output": {
            "frames": count,
            "width": width,
            "height": height,
            "fps": float(fps),
            "duration_seconds": count / float(fps),
            "format": format,
            "quality_crf": None if format == "png" else (DEFAULT_QUALITY[format] if quality is None else int(quality)),
            "pixel_format": None if format == "png" else "yuv420p",
            "encoder": encoder,
        },
        "static_check": motion.as_dict(),
    }
    sidecar = write_sidecar(path, full)
    if motion.frozen:
        log.warning(
            "sample %s looks frozen: mean difference between consecutive frames %.3f is below %.3f (0..255 scale)",
            path,
            motion.mean_frame_difference,
            motion.threshold,
        )
    return ExportedSample(path=path, sidecar=sidecar, motion=motion, record=full)
