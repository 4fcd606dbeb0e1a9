"""Real media files for the "frames as shown" tests, made at test time by the bundled ffmpeg (nothing committed).

Every frame carries what identifies it from any side: a centre patch whose grey level counts the frame
(40 + 3 * number), four corner patches of known colours (red top-left, green top-right, blue bottom-left,
yellow bottom-right, as stored) that give the orientation and check colour. `player_frames` is the
independent reference: the ffmpeg command line decoding the file as a player shows it (display rotation
applied by its autorotate, pixel aspect applied by scaling the width, edit lists honoured, one output frame
per shown frame).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from modules.util.video_export import find_ffmpeg

CORNERS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
STORED_CORNERS = ("red", "green", "blue", "yellow")  # top-left, top-right, bottom-left, bottom-right
BACKGROUND = 128
PATCH = 16  # corner patch side, px


def pattern(number: int, width: int = 96, height: int = 64) -> np.ndarray:
    frame = np.full((height, width, 3), BACKGROUND, np.uint8)
    frame[:PATCH, :PATCH] = CORNERS["red"]
    frame[:PATCH, -PATCH:] = CORNERS["green"]
    frame[-PATCH:, :PATCH] = CORNERS["blue"]
    frame[-PATCH:, -PATCH:] = CORNERS["yellow"]
    cy, cx = height // 2, width // 2
    frame[cy - 10 : cy + 10, cx - 10 : cx + 10] = 40 + 3 * number
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The counter of a decoded frame in any orientation or scale: the centre stays the centre."""
    height, width = frame.shape[:2]
    centre = frame[height // 2 - 4 : height // 2 + 4, width // 2 - 4 : width // 2 + 4].astype(float).mean()
    return round((centre - 40) / 3)


def corner_names(frame: np.ndarray) -> tuple[str, ...]:
    """The colour name nearest to each corner of a decoded frame: top-left, top-right, bottom-left, bottom-right."""
    spots = [frame[3:6, 3:6], frame[3:6, -6:-3], frame[-6:-3, 3:6], frame[-6:-3, -6:-3]]
    names = []
    for spot in spots:
        colour = spot.reshape(-1, 3).astype(float).mean(axis=0)
        names.append(min(CORNERS, key=lambda name: np.abs(colour - CORNERS[name]).sum()))
    return tuple(names)


def corner_error(frame: np.ndarray) -> float:
    """Largest mean absolute difference of a corner from its named colour: the colour check."""
    spots = [frame[3:6, 3:6], frame[3:6, -6:-3], frame[-6:-3, 3:6], frame[-6:-3, -6:-3]]
    names = corner_names(frame)
    return max(np.abs(s.reshape(-1, 3).astype(float).mean(0) - CORNERS[n]).mean() for s, n in zip(spots, names))


def ffmpeg(*args: str, data: bytes | None = None) -> bytes:
    result = subprocess.run([find_ffmpeg(), "-y", "-v", "error", *args], input=data, capture_output=True)
    if result.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def encoder_available(name: str) -> bool:
    return f" {name} " in ffmpeg("-hide_banner", "-encoders").decode()


def write_pattern_video(
    path: Path,
    count: int = 60,
    fps: int = 30,
    width: int = 96,
    height: int = 64,
    codec: tuple[str, ...] = ("-c:v", "libx264", "-crf", "4", "-g", "12", "-bf", "2"),
    filters: str = "",
    extra: tuple[str, ...] = (),
) -> Path:
    raw = b"".join(pattern(i, width, height).tobytes() for i in range(count))
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"),
        *codec,
        *(("-vf", filters) if filters else ()),
        *extra,
        *("-pix_fmt", "yuv420p", str(path)),
        data=raw,
    )
    return path


def with_rotation(source: Path, path: Path, degrees: int) -> Path:
    """A copy whose display matrix asks for `degrees` counter-clockwise (as phones store portrait video)."""
    ffmpeg("-display_rotation", str(degrees), "-i", str(source), "-c", "copy", str(path))
    return path


def with_display_matrix(source: Path, path: Path, rotation: int | None = None, hflip=False, vflip=False) -> Path:
    """A copy whose display matrix rotates and/or mirrors (front cameras and editors write mirrored matrices)."""
    options = [*(("-display_rotation", str(rotation)) if rotation is not None else ())]
    options += [*(("-display_hflip",) if hflip else ()), *(("-display_vflip",) if vflip else ())]
    ffmpeg(*options, "-i", str(source), "-c", "copy", str(path))
    return path


def trimmed(source: Path, path: Path, start: float) -> Path:
    """`-ss start -c copy`: no re-encode, so the file keeps frames before `start` hidden by an edit list."""
    ffmpeg("-ss", str(start), "-i", str(source), "-c", "copy", str(path))
    return path


def player_frames(path: Path, width: int, height: int, scale_width: bool = False) -> np.ndarray:
    """Every shown frame as the ffmpeg command line plays it, uint8 (count, height, width, 3)."""
    filters = ("-vf", f"scale={width}:{height}:flags=bilinear,setsar=1") if scale_width else ()
    raw = ffmpeg("-i", str(path), *filters, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
