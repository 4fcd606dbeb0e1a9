"""Decode cost of the frames-as-shown rule on constant-frame-rate files: new probe + read / cache format 1's.

Format 1 probed with decord (open, decode frame 0, average rate) and read windows with decord's batch read.
The new rule probes with PyAV (packet timestamps, edit-list flags, the first frame's display matrix) and
reads with decord, bringing frames to the displayed size. Both read the same windows of the same synthetic
constant-rate H.264 clips (no rotation, square pixels: the case that must not get slower; goal: ratio <= 1.10).
Rounds alternate which rule runs first, so drift on a shared machine hits both alike; medians of wall time
and of this process's CPU time (less disturbed by other jobs) are printed.

    python scripts/benchmark_media_decode.py [--clips 6] [--rounds 7] [--frames 33]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _repo_path  # noqa: F401
import decord

from modules.data import media_io
from modules.data.demo_data import DemoClip, write_clip
from modules.data.frame_windows import plan_windows, resampled_source_indices, window_source_indices
from modules.util.errors import run_script

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
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=33, help="4n+1 frames per window")
    args = parser.parse_args()
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
