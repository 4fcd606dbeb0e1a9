"""Long videos into clips at shot boundaries: PySceneDetect finds the cuts, the bundled ffmpeg writes the clips.

Frames are counted as the data pipeline counts them (shown frames, via modules/data/media_io.probe), so a
clip holds exactly the frames a viewer sees between two cuts. A clip is a stream copy when it starts on a
keyframe and ends on one (or at the end of the file): nothing is re-encoded, and the display rotation,
pixel aspect, colour tags and timestamps travel unchanged. Otherwise it is re-encoded with libx264 at the
stated quality; ffmpeg then turns the pixels upright (its autorotate), keeps the pixel aspect, gets the
source's colour tags and keeps each frame's timestamp (variable rates stay variable). Audio is dropped
(WAN trains on video only).

The sources are only read. Each clip and its JSON sidecar (source, its size and modification time, the
frame and time range, how it was written) are written atomically, the sidecar last, so a sidecar that
matches the plan means a finished clip: a rerun skips it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from bisect import bisect_left
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from modules.data.media.media_io import MediaError, MediaInfo, is_image, is_media, probe
from modules.dataset_tools.clip_plan import (
    LengthBounds,
    bounds_from_seconds,
    bounds_from_training_frames,
    plan_clips,
)
from modules.dataset_tools.source_timing import SourceTiming, source_timing
from modules.util.atomic import atomic_path, atomic_write
from modules.util.errors import UserError
from modules.util.video_export import find_ffmpeg

SIDECAR_VERSION = 1
# Clips are MP4; a stream copy is tried only from these containers (others hold codecs MP4 may not).
COPY_SUFFIXES = (".mp4", ".m4v", ".mov")


class SplitError(UserError):
    """Splitting cannot go on: the message names the file or option and the fix."""


@dataclass(frozen=True)
class SplitSettings:
    out_dir: Path
    min_seconds: float = 1.0
    max_seconds: float | None = 10.0
    min_frames: int | None = None  # training frames (4n+1) at `trained_fps`; replace the seconds when set
    max_frames: int | None = None
    trained_fps: float = 16.0
    gap_seconds: float = 0.0
    threshold: float = 27.0  # PySceneDetect ContentDetector's default
    min_shot_seconds: float = 0.5
    crf: int = 18  # libx264 quality of re-encoded clips: visually lossless for most footage
    preset: str = "medium"
    always_reencode: bool = False

    def bounds(self, source_fps: float) -> LengthBounds:
        if self.min_frames is not None or self.max_frames is not None:
            return bounds_from_training_frames(source_fps, self.trained_fps, self.min_frames or 1, self.max_frames)
        return bounds_from_seconds(source_fps, self.min_seconds, self.max_seconds)


def split_sources(inputs: list[Path], settings: SplitSettings) -> tuple[list[dict], list[MediaError]]:
    """Every video of `inputs` (files or folders) split into `settings.out_dir`: one result per clip, and the
    sources that could not be split (each error names its file); one bad file does not stop the others."""
    sources = _videos(inputs, settings.out_dir)
    results, failures = [], []
    for source in tqdm(sources, desc="splitting", unit="video", disable=len(sources) < 2):
        try:
            results += split_one(source, settings)
        except MediaError as error:
            failures.append(error)
            tqdm.write(f"skipped {error}", file=sys.stderr)
    return results, failures


def split_one(source: Path, settings: SplitSettings) -> list[dict]:
    info = probe(source)
    if info.is_image or info.frame_count < 2:
        raise MediaError(source, "not a video with several frames", "pass video files (mp4, mov, mkv, webm)")
    timing = source_timing(source, info)
    shots = detect_shots(source, info, timing, settings)
    gap = round(settings.gap_seconds * info.fps)
    clips = plan_clips(shots, info.frame_count, settings.bounds(info.fps), gap)
    results = []
    for index, (start, end) in enumerate(tqdm(clips, desc=source.name, unit="clip", disable=not clips)):
        results.append(_write_clip(source, info, timing, settings, index, start, end))
    return results


def detect_shots(source: Path, info: MediaInfo, timing: SourceTiming, settings: SplitSettings) -> list[tuple]:
    """[start, end) shown-frame ranges of the shots, covering the whole file."""
    from scenedetect import ContentDetector, detect

    min_shot = max(1, round(settings.min_shot_seconds * info.fps))
    try:
        detector = ContentDetector(threshold=settings.threshold, min_scene_len=min_shot)
        scenes = detect(str(source), detector, backend="pyav")
    except Exception as error:  # PySceneDetect raises its own and PyAV's errors
        raise MediaError(source, f"shot detection failed ({error})") from None
    cuts = sorted({_frame_of(start, info, timing) for start, _ in scenes} - {0})
    cuts = [cut for cut in cuts if 0 < cut < info.frame_count]
    edges = [0, *cuts, info.frame_count]
    return list(zip(edges[:-1], edges[1:]))


def _frame_of(timecode, info: MediaInfo, timing: SourceTiming) -> int:
    if info.timestamps is None:
        return int(timecode.frame_num)
    # Variable rate: the shown frame nearest to the detector's time.
    times = timing.frame_times[:-1]
    at = bisect_left(times, float(timecode.seconds))
    if at == len(times) or (at > 0 and float(timecode.seconds) - times[at - 1] < times[at] - float(timecode.seconds)):
        at -= 1
    return max(at, 0)


def clip_record(source: Path, info: MediaInfo, timing: SourceTiming, settings: SplitSettings, start: int, end: int):
    """The sidecar of one planned clip: enough to find its frames again and to know it is finished."""
    copy = (
        not settings.always_reencode
        and source.suffix.lower() in COPY_SUFFIXES
        and start in timing.keyframes
        and (end == info.frame_count or end in timing.keyframes)
    )
    stat = source.stat()
    return {
        "version": SIDECAR_VERSION,
        "source": str(source.resolve()),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "start_frame": start,
        "end_frame": end,  # exclusive
        "frames": end - start,
        "start_time": round(timing.frame_times[start], 6),
        "end_time": round(timing.frame_times[end], 6),
        "source_fps": info.fps,
        "method": "stream copy" if copy else "re-encode",
        "encoder": None if copy else _encoder(settings),
        "corrections": list(info.corrections),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items() if k != "out_dir"},
    }


def _write_clip(source, info, timing, settings, index, start, end) -> dict:
    record = clip_record(source, info, timing, settings, start, end)
    clip = settings.out_dir / f"{source.stem}_{index:03d}.mp4"
    sidecar = clip.with_suffix(".json")
    if clip.is_file() and _planned(_sidecar(sidecar)) == _planned(record):
        return {"clip": str(clip), "status": "skipped (already done)", **record}
    with atomic_path(clip) as tmp:
        if record["method"] == "stream copy" and not _stream_copy(source, timing, start, end, tmp):
            record.update(method="re-encode", encoder=_encoder(settings))
        if record["method"] == "re-encode":
            _reencode(source, info, timing, settings, start, end, tmp)
    atomic_write(sidecar, lambda file: file.write(json.dumps(record, indent=2).encode()))
    return {"clip": str(clip), "status": "written", **record}


def _planned(record: dict | None) -> dict | None:
    """A sidecar without how the clip was written (a stream copy that failed its check became a re-encode)."""
    return None if record is None else {k: v for k, v in record.items() if k not in ("method", "encoder")}


def _encoder(settings: SplitSettings) -> dict:
    return {"codec": "libx264", "crf": settings.crf, "preset": settings.preset}


def _cut_command(source: Path, seek: float) -> list[str]:
    return [find_ffmpeg(), "-y", "-v", "error", "-ss", f"{seek:.6f}", "-i", str(source)]


def _stream_copy(source: Path, timing: SourceTiming, start: int, end: int, out: Path) -> bool:
    """Copies the packets of [start, end); False when the copy does not hold exactly those frames.

    The packets are counted (`-frames:v`), not timed: with B-frames a time limit cuts in decode order and
    keeps frames of the next shot. In a closed GOP the frames before the next keyframe come first in decode
    order; an open GOP (or a stream ffmpeg cannot put in MP4) fails the check and is re-encoded instead.
    """
    # ffmpeg seeks a copy to the last keyframe at or before -ss, which counts whole microseconds: the keyframe's
    # time rounded up lands on it, and the sub-microsecond rest is below any container's tick (no edit list).
    seek = math.ceil((timing.offset + timing.frame_times[start]) * 1_000_000) / 1_000_000
    command = _cut_command(source, seek)
    command += ["-map", "0:v:0", "-an", "-sn", "-dn", "-c", "copy", "-frames:v", str(end - start)]
    command += ["-f", "mp4", str(out)]
    if subprocess.run(command, capture_output=True).returncode:
        return False
    try:
        copied = probe(out)
    except MediaError:
        return False
    return copied.frame_count == end - start and (copied.timestamps is None or _same_times(copied, timing, start))


def _same_times(copied: MediaInfo, timing: SourceTiming, start: int) -> bool:
    source_times = [t - timing.frame_times[start] for t in timing.frame_times[start:]]
    return copied.timestamps is not None and all(abs(a - b) < 1e-3 for a, b in zip(copied.timestamps, source_times))


def _reencode(source, info: MediaInfo, timing: SourceTiming, settings: SplitSettings, start: int, end: int, out):
    """Decodes from the start time and keeps [start, end) exactly, with each frame's own timestamp."""
    command = _cut_command(source, timing.seek_time(start))
    command += ["-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", str(end - start)]
    command += ["-c:v", "libx264", "-crf", str(settings.crf), "-preset", settings.preset, "-fps_mode", "passthrough"]
    for option, value in timing.colour.items():
        command += [option, value]
    done = subprocess.run([*command, "-f", "mp4", str(out)], capture_output=True, text=True)
    if done.returncode:
        raise MediaError(source, f"ffmpeg could not write frames {start}-{end} ({done.stderr.strip()[-400:]})")


def _sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _videos(inputs: list[Path], out_dir: Path) -> list[Path]:
    found = []
    for given in inputs:
        if given.is_dir():
            if given.resolve() == out_dir.resolve():
                raise SplitError(f"{given}: the output folder is an input folder. Fix: pass another --out folder.")
            found += sorted(p for p in given.iterdir() if p.is_file() and is_media(p) and not is_image(p))
        elif given.is_file():
            found.append(given)
        else:
            raise SplitError(f"{given}: no such file or folder. Fix: pass video files or folders of them.")
    if not found:
        raise SplitError(f"{', '.join(map(str, inputs))}: no videos found. Fix: pass video files or folders of them.")
    return found
