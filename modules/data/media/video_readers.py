"""The two video readers, brought to the same displayed frames: PyAV (metadata and fallback) and decord (speed).

PyAV reads what a player needs and decord cannot report: the display rotation and mirror (from the first
frame's display matrix), the sample aspect ratio, the presentation timestamps and an edit list's hidden lead-in
(packets FFmpeg flags "discard"). So the probe uses PyAV, and decord only when PyAV cannot open a file.

decord applies the display matrix's angle itself (FFmpeg's reading, which takes a left-right mirror for a
180 turn) but neither the mirror nor the pixel aspect, and numbers the frames of a file with
an edit list differently by access pattern (a batch read from the start skips the hidden frames, a seek
does not), so such files are read with PyAV only. PyAV applies neither rotation, mirror nor pixel aspect: both
readers' frames go through as_shown.to_displayed, which undoes decord's turn where a mirror makes it wrong.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from modules.data.media.as_shown import (
    display_transform,
    displayed_size,
    is_constant_rate,
    mirror_words,
    normalise_rotation,
    pixel_aspect_of,
    rate_range,
    to_displayed,
)
from modules.data.media.media_info import MediaError, MediaInfo
from modules.data.media.picture_filters import filtered_frames, picture_filter


# ---- PyAV --------------------------------------------------------------------------------------
def probe_pyav(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(path, "PyAV: the file has no video stream")
        stream = container.streams.video[0]
        container_name = container.format.name
        pixel_aspect = pixel_aspect_of(stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio)
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        time_base = stream.time_base or Fraction(0)
        shown_pts, hidden, untimed = [], 0, 0
        for packet in container.demux(stream):  # packets only: nothing is decoded here
            if not packet.size:
                continue
            if packet.is_discard:  # before an edit list's start: decoded for reference, never shown
                hidden += 1
            elif packet.pts is None:
                untimed += 1
            else:
                shown_pts.append(packet.pts)
    count = len(shown_pts) + untimed
    if count <= 0:
        raise MediaError(path, "PyAV: the video has no frames")
    with av.open(str(path)) as container:  # the first shown frame: its stored size and display matrix
        first = next(container.decode(video=0), None)
        if first is None:
            raise MediaError(path, "PyAV: no frame could be decoded")
        stored_width, stored_height = first.width, first.height
        reader_rotation = normalise_rotation(first.rotation)
        rotation, mirrored = display_matrix_of(first)
        look = picture_filter(container.streams.video[0].codec_context, first)
    timestamps = None
    if not untimed and time_base and len(shown_pts) > 2:
        shown_pts.sort()
        times = [float((pts - shown_pts[0]) * time_base) for pts in shown_pts]
        if not is_constant_rate(times):
            timestamps = tuple(times)
            rate = Fraction((len(times) - 1) / times[-1]) if times[-1] > 0 else rate
    info = video_info(
        path,
        count,
        float(rate),
        stored_width,
        stored_height,
        rotation,
        pixel_aspect,
        timestamps,
        hidden,
        # Cache format 1 decoded with decord when it could, which rotates: only files decord cannot open
        # were trained unrotated, so only their entries must change (a mirror changes every file's frames).
        rotation_changes_frames=bool(rotation) and not mirrored and not decord_opens(path),
        mirrored=mirrored,
        reader_rotation=reader_rotation,
    )
    return replace(
        info,
        container=container_name,
        pts=tuple(sorted(shown_pts)) if not untimed else (),
        video_filter=look.chain,
        corrections=info.corrections + look.corrections,
        frame_rule=info.frame_rule + look.rule,
    )


def display_matrix_of(frame) -> tuple[int, bool]:
    """(rotation, mirrored) from a decoded frame's display-matrix side data; upright when it has none."""
    for side_data in frame.side_data:
        if side_data.type.name == "DISPLAYMATRIX":
            return display_transform(np.frombuffer(bytes(side_data), dtype=np.int32))
    return 0, False


# A wanted frame further ahead of the decoder than this is reached by a seek to the keyframe before it rather
# than by decoding on: about one keyframe interval of common encoders (2 s), where the two cost about the same.
SEEK_AHEAD_S = 2.0


def read_pyav(path: Path, indices: list[int], info: MediaInfo, stretch: bool = True) -> np.ndarray:
    """The shown frames at `indices`; positions are shown frames (an edit list's hidden frames never count).

    Each run of wanted frames starts with a seek to the keyframe before it, and decoded frames are matched
    to shown frames by their presentation timestamps (the probe's `pts`), so a window's cost does not grow
    with its position in the clip. A file without timestamps, or a seek that lands past its target (some
    MPEG-TS), is decoded from the start instead, where FFmpeg drops the hidden frames itself.
    """
    import av

    wanted = sorted(set(indices))
    frames = None
    if len(info.pts) == info.frame_count:
        with av.open(str(path)) as container:
            frames = _decode_by_seeking(container, container.streams.video[0], wanted, info)
    if frames is None:
        with av.open(str(path)) as container:
            frames = _decode_from_start(container, wanted, info.video_filter)
    missing = sorted(set(wanted) - frames.keys())
    if missing:
        raise MediaError(
            path,
            f"PyAV: only {len(frames)} of the {len(wanted)} requested frames could be decoded "
            f"(frame {missing[0]} is missing; the file may be truncated)",
        )
    stacked = np.stack([frames[i] for i in indices])
    return to_displayed(stacked, info.width, info.height, info.rotation, False, info.mirrored, stretch=stretch)


def _decode_from_start(container, wanted: list[int], chain: str = "") -> dict[int, np.ndarray]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    wanted_set, last, frames = set(wanted), wanted[-1], {}
    for position, frame in enumerate(filtered_frames(container.decode(stream), stream, chain)):
        if position in wanted_set:
            frames[position] = frame.to_ndarray(format="rgb24")
        if position >= last:
            break
    return frames


def _decode_by_seeking(container, stream, wanted: list[int], info: MediaInfo) -> dict[int, np.ndarray] | None:
    """Wanted frames by seek and decode, or None when timestamps do not lead to them (decode from the start).

    A seek that lands past its frame, or at the end (MPEG-TS seeks by byte position and may land on a later
    keyframe), is retried from further back, one second and then doubling, before giving up.
    """
    stream.thread_type = "AUTO"
    shown_index = {pts: index for index, pts in enumerate(info.pts)}
    ahead = max(1, round(SEEK_AHEAD_S * (info.fps or 30)))
    second = max(1, round(1 / stream.time_base)) if stream.time_base else 0
    frames: dict[int, np.ndarray] = {}
    next_wanted, position, margin = 0, None, 0
    while next_wanted < len(wanted):
        target = wanted[next_wanted]
        if position is None or target > position + ahead:
            if info.pts[target] - margin < info.pts[0] - second:
                return None  # even a seek to the start overshoots: no usable index
            container.seek(info.pts[target] - margin, stream=stream, backward=True, any_frame=False)
            decoded, landed = filtered_frames(container.decode(stream), stream, info.video_filter), False
        for frame in decoded:
            shown = shown_index.get(frame.pts)
            if shown is None:
                if frame.pts is None:
                    return None
                continue  # a hidden lead-in frame, decoded for reference only
            if not landed and shown > target:
                break  # landed past the frame: seek again from further back
            landed, position = True, shown
            if shown == wanted[next_wanted]:
                frames[shown] = frame.to_ndarray(format="rgb24")
                next_wanted += 1
            elif shown > wanted[next_wanted]:
                return None  # a wanted frame's timestamp never came out of the decoder
            if next_wanted >= len(wanted) or wanted[next_wanted] > position + ahead:
                break
        else:
            if landed:
                break  # end of stream after the frames found: what is missing makes this None
        if not landed:  # landed past the frame, or at the end of the stream: seek from further back
            if not second:
                return None
            margin, position = max(2 * margin, second), None
        else:
            margin = 0
    return frames if len(frames) == len(wanted) else None


# ---- decord ------------------------------------------------------------------------------------
def _decord_reader(path: Path):
    import decord

    return decord.VideoReader(str(path), num_threads=1)


def decord_opens(path: Path) -> bool:
    try:
        _decord_reader(path)
        return True
    except Exception:  # ImportError, decord's DECORDError/RuntimeError: it cannot read this file
        return False


def probe_decord(path: Path) -> MediaInfo:
    """Used only when PyAV cannot open the file: decord sees neither pixel aspect nor edit lists."""
    reader = _decord_reader(path)
    count = len(reader)
    if count == 0:
        raise MediaError(path, "decord: the video has no frames")
    height, width = reader[0].shape[:2]  # already rotated by decord
    fps = float(reader.get_avg_fps())
    times = [float(t) for t in reader.get_frame_timestamp(list(range(count)))[:, 0]]
    timestamps = None
    if not is_constant_rate(times) and times[-1] > times[0]:
        timestamps = tuple(t - times[0] for t in times)
        fps = (count - 1) / timestamps[-1]
    return video_info(path, count, fps, int(width), int(height), 0, Fraction(1), timestamps, 0, False)


def read_decord(path: Path, indices: list[int], info: MediaInfo, stretch: bool = True) -> np.ndarray:
    reader = _decord_reader(path)
    if len(reader) != info.frame_count:
        # decord numbers frames differently from what a player shows (the probe's count): its index i would
        # not be shown frame i. Raised as a MediaError, so 'auto' reads the file with PyAV instead.
        raise MediaError(path, f"decord counts {len(reader)} frames where a player shows {info.frame_count}")
    frames = reader.get_batch(list(indices)).asnumpy()
    rotation, mirrored, applied = info.rotation, info.mirrored, info.reader_rotation
    return to_displayed(frames, info.width, info.height, rotation, True, mirrored, applied, stretch=stretch)


# ---- animated images (read with Pillow, image_io.py) --------------------------------------------
def animation_info(animation) -> MediaInfo:
    """An animated GIF/WebP/PNG as a video: frames at their own durations (a variable rate when they differ)."""
    starts = np.concatenate([[0.0], np.cumsum(animation.durations)[:-1]])
    times = [float(t) for t in starts]
    fps = len(times) / sum(animation.durations)
    timestamps = None if is_constant_rate(times) else tuple(times)
    info = video_info(None, len(times), fps, animation.width, animation.height, 0, Fraction(1), timestamps, 0, False)
    what = f"animated {animation.format}: {len(times)} frames read as a video (Pillow)"
    return replace(
        info,
        animated=True,
        corrections=(what, *info.corrections),
        # Cache format 1 read GIFs with a video reader and animated WebP as their first frame: new entries.
        frame_rule=(("animated_image", "pillow"), *info.frame_rule),
    )


# ---- what the probe reports ---------------------------------------------------------------------
def video_info(
    path: Path | None,
    count: int,
    fps: float,
    stored_width: int,
    stored_height: int,
    rotation: int,
    pixel_aspect: Fraction,
    timestamps: tuple[float, ...] | None,
    hidden: int,
    rotation_changes_frames: bool,
    mirrored: bool = False,
    reader_rotation: int | None = None,
) -> MediaInfo:
    width, height = displayed_size(stored_width, stored_height, pixel_aspect, rotation)
    corrections, rule = [], []
    if rotation or mirrored:
        corrections.append(mirror_words(rotation, mirrored))
        if mirrored:  # both readers trained these wrong before (decord turned a mirror into a rotation)
            rule.append(("display_matrix", f"mirror-then-rotate-{rotation}"))
        elif rotation_changes_frames:
            rule.append(("rotation", str(rotation)))
    if pixel_aspect != 1:
        unrotated = (height, width) if rotation in (90, 270) else (width, height)
        corrections.append(f"SAR {pixel_aspect.numerator}:{pixel_aspect.denominator} -> {unrotated[0]}x{unrotated[1]}")
        # Resized once from the stored size to the bucket (media_io.read_window), not stretched then scaled again.
        rule.append(("pixel_aspect", f"{pixel_aspect.numerator}:{pixel_aspect.denominator}, one resize"))
    if timestamps is not None:
        low, high = rate_range(list(timestamps))
        corrections.append(f"variable frame rate ({low:.3g}-{high:.3g} fps): planned on timestamps")
    if hidden:
        corrections.append(f"edit list: {hidden} frame(s) before the visible start are not used; read with PyAV")
        rule.append(("edit_list_hidden", str(hidden)))
    return MediaInfo(
        frame_count=count,
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        mirrored=mirrored,
        reader_rotation=rotation if reader_rotation is None else reader_rotation,
        pixel_aspect=pixel_aspect,
        timestamps=timestamps,
        hidden_frames=hidden,
        corrections=tuple(corrections),
        frame_rule=tuple(rule),
    )
