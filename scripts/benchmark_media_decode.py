"""Decode cost of the frames-as-shown rule: constant-rate files, edit-listed clips, non-square pixels.

--case constant (the first section below), --case edit-list, --case pixel-aspect, or all three (default).

constant: new probe + read / cache format 1's on constant-frame-rate files.
Format 1 probed with decord (open, decode frame 0, average rate) and read windows with decord's batch read.
The new rule probes with PyAV (packet timestamps, edit-list flags, the first frame's display matrix) and
reads with decord, bringing frames to the displayed size. Both read the same windows of the same synthetic
constant-rate H.264 clips (no rotation, square pixels: the case that must not get slower; goal: ratio <= 1.10).
Rounds alternate which rule runs first, so drift on a shared machine hits both alike; medians of wall time
and of this process's CPU time (less disturbed by other jobs) are printed.

edit-list: a long clip trimmed with `-ss 0.5 -c copy` (an edit list hides its first frames; read with PyAV,
which now seeks to the keyframe before each window) against the same clip without the edit list (read with
decord, as 'auto' does, and with PyAV). Windows spread over the clip; CPU time per window by position, the
ratio edit-listed / plain, and the former decode-from-start read of the edit-listed clip for comparison.
Goal: ratio <= 1.3, the last window no dearer than the first.

pixel-aspect: windows of a 720x480 clip with 32:27 pixels (shown 853x480) cached into their bucket (one resize,
media_io.read_window) against the same clip with square pixels. Goal: ratio <= 1.1; the former stretch-then-
resize read of the non-square clip is timed for comparison.

    python scripts/benchmark_media_decode.py [--case all] [--clips 6] [--rounds 7] [--frames 33]
        [--seconds 60] [--size 1280x720]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import decord
import numpy as np

from modules.data.clips.buckets import resize_and_crop, resolution_bucket
from modules.data.clips.frame_windows import plan_windows, resampled_source_indices, window_source_indices
from modules.data.media import media_io, video_readers
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.util.errors import run_script
from modules.util.video_export import find_ffmpeg

TARGET_FPS = 16


def format_1_probe(path: Path) -> tuple[int, float]:
    """Cache format 1's probe, kept here as the baseline: decord open, frame 0 decoded, average rate."""
    reader = decord.VideoReader(str(path), num_threads=1)
    reader[0]
    return len(reader), float(reader.get_avg_fps())


def format_1_read(path: Path, indices: list[int]):
    return decord.VideoReader(str(path), num_threads=1).get_batch(indices).asnumpy()


def windows(count: int, fps: float, frames: int) -> list[list[int]]:
    resampled = resampled_source_indices(count, fps, TARGET_FPS)
    return [window_source_indices(resampled, w) for w in plan_windows(len(resampled), frames, "uniform", 2)]


def run_old(paths: list[Path], frames: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        count, fps = format_1_probe(path)
        for indices in windows(count, fps, frames):
            format_1_read(path, indices)
    return time.perf_counter() - start, time.process_time() - cpu


def run_new(paths: list[Path], frames: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        info = media_io.probe(path)
        for indices in windows(info.frame_count, info.fps, frames):
            media_io.read_frames(path, indices, "auto", info)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("all", "constant", "edit-list", "pixel-aspect"), default="all")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=33, help="4n+1 frames per window")
    parser.add_argument("--seconds", type=int, default=60, help="length of the edit-list clip")
    parser.add_argument("--size", default="1280x720", help="size of the edit-list clip")
    args = parser.parse_args()
    if args.case in ("all", "constant"):
        constant_rate_case(args)
    if args.case in ("all", "edit-list"):
        edit_list_case(args)
    if args.case in ("all", "pixel-aspect"):
        pixel_aspect_case(args)


def ffmpeg(*options: str) -> None:
    subprocess.run([find_ffmpeg(), "-y", "-v", "error", *options], check=True)


def cpu_seconds(read) -> float:
    start = time.process_time()  # all this process's threads: PyAV decodes on several
    read()
    return time.process_time() - start


def edit_list_case(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        plain, edit = Path(tmp) / "plain.mp4", Path(tmp) / "edit.mp4"
        source = f"testsrc2=size={args.size}:rate=30:duration={args.seconds}"
        # A keyframe every 2 s, as phones and cameras write; -ss 0.5 -c copy keeps the lead-in behind an edit list.
        encode = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
        ffmpeg("-f", "lavfi", "-i", source, *encode, "-g", "60", str(plain))
        ffmpeg("-ss", "0.5", "-i", str(plain), "-c", "copy", str(edit))
        infos = {path: media_io.probe(path) for path in (plain, edit)}
        assert infos[edit].hidden_frames and not infos[plain].hidden_frames
        count = infos[edit].frame_count
        resampled = resampled_source_indices(count, infos[edit].fps, TARGET_FPS)
        spread = [window_source_indices(resampled, w) for w in plan_windows(len(resampled), args.frames, "uniform", 4)]
        hidden = infos[edit].hidden_frames
        # The same source frames in both files: the plain file counts the hidden lead-in, the edit-listed one not.
        for indices in spread:  # checked before timing: seek and decode-from-start give identical frames
            seek = media_io.read_frames(edit, indices, "auto", infos[edit])
            from_start = _from_start(edit, indices, infos[edit])
            assert np.array_equal(seek, from_start)
        readers = {
            "plain": lambda i: media_io.read_frames(plain, [n + hidden for n in i], "auto", infos[plain]),
            "plain, PyAV": lambda i: media_io.read_frames(plain, [n + hidden for n in i], "pyav", infos[plain]),
            "edit": lambda i: media_io.read_frames(edit, i, "auto", infos[edit]),
            "edit, decoded from start": lambda i: _from_start(edit, i, infos[edit]),
        }
        costs: dict[str, list[list[float]]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, read in readers.items():
                costs[name].append([cpu_seconds(lambda i=i: read(i)) for i in spread])
    medians = {
        name: [statistics.median(r[k] for r in rounds) for k in range(len(spread))] for name, rounds in costs.items()
    }
    print(f"\nedit list: {args.seconds} s {args.size} H.264 at 30 fps (keyframe every 2 s), {len(spread)} windows of "
          f"{args.frames} frames at {TARGET_FPS} fps spread over the clip; CPU s per window by position, median of "
          f"{args.rounds}")  # fmt: skip
    for name, values in medians.items():
        print(f"  {name:26s} " + "  ".join(f"{v:.3f}" for v in values) + f"   total {sum(values):.3f}")
    ratio = sum(medians["edit"]) / sum(medians["plain"])
    before = sum(medians["edit, decoded from start"]) / sum(medians["plain"])
    same_reader = sum(medians["edit"]) / sum(medians["plain, PyAV"])
    last_first = medians["edit"][-1] / medians["edit"][0]
    print(f"  edit-listed / plain: {ratio:.3f} (goal <= 1.3); both read with PyAV: {same_reader:.3f}; "
          f"before (decode from start): {before:.3f}; last window / first window: {last_first:.3f}")  # fmt: skip


def _from_start(path: Path, indices: list[int], info) -> np.ndarray:
    """The former read of an edit-listed clip: decode from the start every time (kept here as the baseline)."""
    import av

    with av.open(str(path)) as container:
        frames = video_readers._decode_from_start(container, sorted(set(indices)))
    return np.stack([frames[i] for i in indices])


def pixel_aspect_case(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, sar in (("square", "1"), ("non-square", "32/27")):
            paths[name] = Path(tmp) / f"{name}.mp4"
            source = ("-f", "lavfi", "-i", "testsrc2=size=720x480:rate=30:duration=8", "-vf", f"setsar={sar}")
            ffmpeg(
                *source, "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p", str(paths[name])
            )
        infos = {name: media_io.probe(path) for name, path in paths.items()}
        assert (infos["non-square"].width, infos["square"].width) == (853, 720)
        spread = windows(infos["square"].frame_count, infos["square"].fps, args.frames)
        buckets = {name: resolution_bucket(i.width, i.height, 480 * 480, 16) for name, i in infos.items()}

        def cached(name: str, once: bool = True):
            path, info, (width, height) = paths[name], infos[name], buckets[name]
            for indices in spread:
                if once:
                    media_io.read_window(path, indices, width, height, "auto", info)
                else:  # the former path: stretched to the shown size, then scaled again into the bucket
                    resize_and_crop(media_io.read_frames(path, indices, "auto", info), width, height)

        costs = {"square": [], "non-square": [], "non-square, resized twice": []}
        for round_index in range(args.rounds + 1):  # round 0 warms up and is not counted
            measured = {
                "square": cpu_seconds(lambda: cached("square")),
                "non-square": cpu_seconds(lambda: cached("non-square")),
                "non-square, resized twice": cpu_seconds(lambda: cached("non-square", once=False)),
            }
            if round_index:
                for name, value in measured.items():
                    costs[name].append(value)
    medians = {name: statistics.median(values) for name, values in costs.items()}
    print(f"\npixel aspect: 720x480 H.264, 8 s at 30 fps, {len(spread)} windows of {args.frames} frames into the "
          f"480x480-area bucket of the shown size; CPU s, median of {args.rounds}")  # fmt: skip
    for name, value in medians.items():
        print(f"  {name:26s} {value:.3f}")
    print(f"  non-square / square: {medians['non-square'] / medians['square']:.3f} (goal <= 1.1); before (two "
          f"resizes): {medians['non-square, resized twice'] / medians['square']:.3f}")  # fmt: skip


def constant_rate_case(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for index in range(args.clips):
            width, height = (384, 256) if index % 2 else (256, 320)
            fps = (24, 30, 25)[index % 3]
            clip = DemoClip(f"clip{index}", "circle", "red", "blue", width, height, 4 * fps, fps)
            paths.append(write_clip(clip, folder))
        for path in paths:  # the same windows and frames under both rules, checked before timing
            info = media_io.probe(path)
            count, fps = format_1_probe(path)
            assert (info.frame_count, info.fps) == (count, fps) and not info.corrections, path
            for indices in windows(count, fps, args.frames):
                assert (media_io.read_frames(path, indices, "auto", info) == format_1_read(path, indices)).all()
        old_times, new_times, old_cpu, new_cpu = [], [], [], []
        for round_index in range(args.rounds + 1):  # round 0 warms caches and is not counted
            order = [("old", run_old), ("new", run_new)][:: 1 if round_index % 2 else -1]
            for name, run in order:
                seconds, cpu_seconds = run(paths, args.frames)
                if round_index:
                    (old_times if name == "old" else new_times).append(seconds)
                    (old_cpu if name == "old" else new_cpu).append(cpu_seconds)
    old, new = statistics.median(old_times), statistics.median(new_times)
    print(f"{args.clips} constant-rate H.264 clips, 2 windows of {args.frames} frames each at {TARGET_FPS} fps")
    print(f"format 1 (decord probe + decord read), median of {len(old_times)}: {old:.3f} s")
    print(f"as shown (PyAV probe + decord read),   median of {len(new_times)}: {new:.3f} s")
    # CPU time of this process: far less disturbed than wall time by other jobs on a shared machine.
    old_cpu_median, new_cpu_median = statistics.median(old_cpu), statistics.median(new_cpu)
    print(
        f"CPU time, medians: format 1 {old_cpu_median:.3f} s, as shown {new_cpu_median:.3f} s, "
        f"ratio {new_cpu_median / old_cpu_median:.3f}"
    )
    print(
        f"decode ratio new/old (wall): {new / old:.3f} (goal <= 1.10); per-round ratios: "
        + ", ".join(f"{n / o:.2f}" for o, n in zip(old_times, new_times))
    )


if __name__ == "__main__":
    sys.exit(run_script(main))
