"""Frame-window planning and buckets: pure functions checked against formulas and hand-worked cases."""

import numpy as np
import pytest
import torch

from modules.data.clips.buckets import resize_and_crop, resolution_bucket
from modules.data.clips.frame_windows import (
    EXTRACTION_MODES,
    Window,
    is_4n1,
    largest_4n1,
    plan_windows,
    resampled_source_indices,
    timestamp_source_indices,
)


def test_largest_4n1():
    assert [largest_4n1(n) for n in range(0, 11)] == [0, 1, 1, 1, 1, 5, 5, 5, 5, 9, 9]


@pytest.mark.parametrize(
    "source_fps,target_fps,frames", [(30, 24, 60), (12, 24, 20), (24, 24, 48), (60, 16, 121), (29.97, 24, 100)]
)
def test_resampling_puts_each_target_frame_at_its_time(source_fps, target_fps, frames):
    indices = resampled_source_indices(frames, source_fps, target_fps)
    for i, index in enumerate(indices):
        # Frame i of the target clip shows time i / target_fps: the source frame nearest that time.
        assert abs(index / source_fps - i / target_fps) <= 0.5 / source_fps + 1e-9
    assert all(0 <= index < frames for index in indices)
    # Nothing that fits is dropped: one more target frame would need a source frame past the end.
    assert round(len(indices) * source_fps / target_fps) >= frames
    duration = frames / source_fps
    assert abs(len(indices) / target_fps - duration) <= 1 / target_fps + 1 / source_fps


@pytest.mark.parametrize("mode", EXTRACTION_MODES)
@pytest.mark.parametrize("available", [1, 4, 5, 16, 17, 40, 100])
def test_every_window_is_4n1_and_inside_the_clip(mode, available):
    windows = plan_windows(available, 17, mode, max_windows=3, stride=8)
    for window in windows:
        assert is_4n1(window.length)
        assert 0 <= window.start and window.start + window.length <= available
    if available >= 17 and mode != "full":
        assert all(w.length == 17 for w in windows)


def test_modes_by_hand():
    assert plan_windows(100, 17, "head", max_windows=5) == [Window(0, 17)]
    assert plan_windows(40, 17, "chunk", max_windows=5) == [Window(0, 17), Window(17, 17)]
    assert plan_windows(100, 17, "chunk", max_windows=2) == [Window(0, 17), Window(17, 17)]
    assert plan_windows(33, 17, "slide", max_windows=10, stride=8) == [Window(0, 17), Window(8, 17), Window(16, 17)]
    assert plan_windows(97, 17, "uniform", max_windows=3) == [Window(0, 17), Window(40, 17), Window(80, 17)]
    assert plan_windows(100, 17, "full") == [Window(0, 97)]


def test_short_clip_goes_to_a_shorter_bucket_or_is_skipped_by_min_frames():
    assert plan_windows(12, 17, "head") == [Window(0, 9)]
    assert plan_windows(12, 17, "chunk", max_windows=3, min_frames=9) == [Window(0, 9)]
    assert plan_windows(12, 17, "head", min_frames=13) == []
    assert plan_windows(0, 17, "head") == []


def test_resolution_bucket_keeps_aspect_and_multiples():
    for width, height in [(1920, 1080), (1080, 1920), (640, 640), (96, 64), (1280, 544)]:
        for multiple in (16, 32):
            w, h = resolution_bucket(width, height, 480 * 480, multiple)
            assert w % multiple == 0 and h % multiple == 0
            assert abs(w * h / (480 * 480) - 1) < 0.15
            assert abs((w / h) / (width / height) - 1) < 0.1
    assert resolution_bucket(1280, 720, 704 * 1280 // 1, 32) == (1280, 704)


def test_resize_and_crop_scales_to_cover_then_centres():
    # A 40x20 frame whose left half is black, right half white; the bucket is 10x10.
    frame = np.zeros((1, 20, 40, 3), dtype=np.uint8)
    frame[:, :, 20:] = 255
    out = resize_and_crop(frame, 10, 10)
    assert out.shape == (3, 1, 10, 10)
    assert out.min() >= -1 and out.max() <= 1
    # Scaled to 20x10 (cover), then the centre 10 columns: the middle of the frame, half black, half white.
    assert torch.allclose(out[:, 0, :, :4], torch.tensor(-1.0)) and torch.allclose(out[:, 0, :, 6:], torch.tensor(1.0))
    # No resize when the size already matches: exact pixel/127.5 - 1.
    same = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    expected = torch.from_numpy(same).float().permute(3, 0, 1, 2) / 127.5 - 1
    assert torch.equal(resize_and_crop(same, 8, 8), expected)


@pytest.mark.parametrize("source_fps,target_fps", [(30, 24), (25, 16), (60, 24), (24, 24), (12, 24), (29.97, 16)])
def test_timestamp_planning_reduces_to_the_constant_rate_formula(source_fps, target_fps):
    """On an even grid, the nearest-timestamp rule is the round() formula, except at exact half-frame ties."""
    frames = 97
    by_time = timestamp_source_indices([k / source_fps for k in range(frames)], target_fps)
    by_formula = resampled_source_indices(frames, source_fps, target_fps)
    ties = {i for i in range(len(by_formula) + 1) if abs(i * source_fps / target_fps % 1 - 0.5) < 1e-9}
    # The lengths differ only when the clip ends on a tie (the formula rounds ties to even).
    assert len(by_time) == len(by_formula) or min(len(by_time), len(by_formula)) in ties
    common = min(len(by_time), len(by_formula))
    assert [a for i, a in enumerate(by_time[:common]) if i not in ties] == [
        b for i, b in enumerate(by_formula[:common]) if i not in ties
    ]


def test_timestamp_planning_follows_a_rate_change():
    """30 fps for a second, then 10 fps: at 10 fps out, the first second takes every third frame, then every frame."""
    times = [k / 30 for k in range(30)] + [1 + k / 10 for k in range(10)]
    assert timestamp_source_indices(times, 10) == list(range(0, 30, 3)) + list(range(30, 40))
