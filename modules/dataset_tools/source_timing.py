"""What ffmpeg needs to cut a source where the data pipeline counts frames: times, keyframes, colour tags.

The data pipeline's probe (modules/data/media/media_io.py) counts shown frames and knows their times from the
first shown frame; ffmpeg's `-ss` counts from the container's start time. The offset between the two, the
shown keyframes (where a stream copy can start) and the colour tags (so a re-encode is tagged as the source
was) come from PyAV, read once per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.data.media.media_io import MediaError, MediaInfo


@dataclass(frozen=True)
class SourceTiming:
    frame_times: tuple[float, ...]  # shown frame i's time in seconds from the first shown frame, plus the end time
    keyframes: frozenset[int]  # shown frames that are keyframes
    offset: float  # seconds to add to a frame time for ffmpeg's -ss (first shown frame minus container start)
    colour: dict[str, str]  # ffmpeg output options -> value, only the tags the source sets

    def seek_time(self, frame: int) -> float:
        """A time halfway into the interval before `frame`, so rounding cannot pick a neighbour."""
        if frame == 0:
            return self.offset
        return self.offset + (self.frame_times[frame - 1] + self.frame_times[frame]) / 2


def frame_times(info: MediaInfo) -> tuple[float, ...]:
    """Shown frames' times and, last, the end of the last frame (one interval past its start)."""
    if info.timestamps is not None:
        times = list(info.timestamps)
        interval = times[-1] - times[-2] if len(times) > 1 else 1 / max(info.fps, 1e-9)
    else:
        interval = 1 / info.fps
        times = [i * interval for i in range(info.frame_count)]
    return tuple(times + [times[-1] + interval])


_COLOUR_OPTIONS = {
    "color_primaries": "-color_primaries",
    "color_trc": "-color_trc",
    "colorspace": "-colorspace",
    "color_range": "-color_range",
}
_UNSPECIFIED = {"color_primaries": 2, "color_trc": 2, "colorspace": 2, "color_range": 0}


def source_timing(path: Path, info: MediaInfo) -> SourceTiming:
    import av

    times = frame_times(info)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            base = stream.time_base
            shown = []  # (pts, is keyframe) of the shown packets
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard and packet.pts is not None:
                    shown.append((packet.pts, packet.is_keyframe))
            colour = {}
            for attribute, option in _COLOUR_OPTIONS.items():
                value = getattr(stream.codec_context, attribute, None)
                if value is not None and int(value) != _UNSPECIFIED[attribute]:
                    colour[option] = str(int(value))
            start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
    except (OSError, av.FFmpegError) as error:
        raise MediaError(path, f"PyAV: {error}") from None
    shown.sort()
    first = float(shown[0][0] * base) if shown else 0.0
    # Packet i in presentation order is shown frame i (the probe counted the same packets).
    keyframes = frozenset(i for i, (_, key) in enumerate(shown) if key)
    return SourceTiming(times, keyframes, first - start, colour)
