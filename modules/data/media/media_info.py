"""What the probe knows about one media file, in the terms a viewer sees it, and the error for unusable files.

Sizes are *displayed* sizes (after the display rotation and the pixel aspect ratio), frame counts and
indices are those of the frames a player shows (an edit list's hidden lead-in is not counted), and
`timestamps` holds the presentation times of those frames when the rate is not constant. See
docs/data_pipeline.md, "Frames as shown".
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from modules.util.errors import UserError


class MediaError(UserError):
    """A media file cannot be used; the message names the file and why."""

    def __init__(self, path: Path, reason: str, fix: str = ""):
        super().__init__(f"{path}: {reason}" + (f". Fix: {fix}" if fix else ""))
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class MediaInfo:
    frame_count: int  # frames a player shows
    fps: float  # average rate of the shown frames; 0 for images
    width: int  # displayed width (rotation and pixel aspect applied)
    height: int  # displayed height
    is_image: bool = False
    rotation: int = 0  # counter-clockwise degrees (0, 90, 180, 270) the display matrix asks for (after the mirror)
    pixel_aspect: Fraction = Fraction(1)  # sample aspect ratio: stored pixel width / height as shown
    timestamps: tuple[float, ...] | None = None  # seconds from the first shown frame; only for variable rates
    hidden_frames: int = 0  # frames in the file before an edit list's visible start
    # What was corrected to reach the displayed frames, in words for the report ("rotated 90", ...).
    corrections: tuple[str, ...] = ()
    # Cache-key parts for the corrections that make this file's frames differ from what cache format 1
    # decoded, so exactly those files get new entries (see stages.CacheLatents.key).
    frame_rule: tuple[tuple[str, str], ...] = ()
    mirrored: bool = False  # the display matrix mirrors left-right before the rotation (front cameras, editors)
    # The angle FFmpeg's av_display_rotation_get reads from the matrix, which decord applies itself; it differs
    # from `rotation` only for a mirrored matrix (a left-right mirror reads as 180).
    reader_rotation: int = 0
    container: str = ""  # FFmpeg's demuxer name ("mov,mp4,...", "mpegts"); empty when PyAV could not open it
    # Presentation timestamps of the shown frames (stream time base), in order: how PyAV finds a frame after a
    # seek. Empty when the probe could not read them (decord's probe, packets without timestamps).
    pts: tuple[int, ...] = ()
    # FFmpeg filter chain the readers apply to reach the shown frames (deinterlacing; picture_filters.py); "" for none.
    video_filter: str = ""
    animated: bool = False  # an animated GIF/WebP/PNG: a video read with Pillow (image_io.py)
