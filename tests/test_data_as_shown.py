"""Videos come out as a player shows them, through decord and PyAV alike: rotation, pixel aspect, variable
frame rate and edit lists, on real files made by the bundled ffmpeg (tests/media_fixtures.py)."""

import numpy as np
import pytest

from modules.data.caching.cache import cache_key, file_identity
from modules.data.clips.buckets import resolution_bucket
from modules.data.clips.frame_windows import resampled_source_indices
from modules.data.flow.report import DataReport
from modules.data.flow.stages import RESIZE_METHOD, AssignBuckets, CacheLatents, PlanWindows, ProbeMedia
from modules.data.media import media_io
from tests.media_fixtures import (
    corner_error,
    corner_names,
    encoder_available,
    frame_number,
    player_frames,
    trimmed,
    with_display_matrix,
    with_rotation,
    write_pattern_video,
)

# Display rotation is counter-clockwise; stored corners are red, green, blue, yellow (TL, TR, BL, BR).
SHOWN_CORNERS = {
    0: ("red", "green", "blue", "yellow"),
    90: ("green", "yellow", "red", "blue"),
    180: ("yellow", "blue", "green", "red"),
    270: ("blue", "red", "yellow", "green"),
}
# Display matrices with a mirror: (rotation option, -display_hflip, -display_vflip) -> what the report says.
MIRRORS = {
    "hflip": (None, True, False),
    "vflip": (None, False, True),
    "rot90_hflip": (90, True, False),
    "rot270_hflip": (270, True, False),
}
MIRROR_WORDS = {
    "hflip": "mirrored left-right",
    "vflip": "mirrored top-bottom",
    "rot90_hflip": "rotated 270 and mirrored",  # ffmpeg composes the flip first: shown turned 270 after a mirror
    "rot270_hflip": "rotated 90 and mirrored",
}
VFR_TIMES = [n / 30 for n in range(30)] + [1 + (n - 30) / 15 for n in range(30, 60)]  # 30 fps, then 15 fps


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("as_shown")
    base = write_pattern_video(folder / "base.mp4")
    made = {"base": base}
    for degrees in (90, 180, 270):
        made[f"rot{degrees}"] = with_rotation(base, folder / f"rot{degrees}.mp4", degrees)
    for name, (degrees, hflip, vflip) in MIRRORS.items():
        made[name] = with_display_matrix(base, folder / f"{name}.mp4", degrees, hflip, vflip)
    made["sar"] = write_pattern_video(folder / "sar.mp4", filters="setsar=4/3")
    made["vfr"] = write_pattern_video(
        folder / "vfr.mp4",
        filters="settb=1/30,setpts='if(lt(N,30),N,30+2*(N-30))'",  # in 1/30 s ticks: exact times
        extra=("-fps_mode", "passthrough"),
    )
    made["edit"] = trimmed(base, folder / "edit.mp4", 0.5)
    if encoder_available("libaom-av1"):  # decord cannot open AV1: the PyAV path for real
        av1 = write_pattern_video(
            folder / "av1.mp4", codec=("-c:v", "libaom-av1", "-crf", "8", "-cpu-used", "8", "-g", "12")
        )
        made["av1_rot90"] = with_rotation(av1, folder / "av1_rot90.mp4", 90)
    return made


def check_frames(frames: np.ndarray, numbers: list[int], rotation: int) -> None:
    assert [frame_number(f) for f in frames] == numbers
    for frame in frames:
        assert corner_names(frame) == SHOWN_CORNERS[rotation]
        assert corner_error(frame) < 10  # the known colours survive decode and conversion


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_video_is_read_upright_by_both_readers(files, degrees, backend):
    path = files[f"rot{degrees}"]
    info = media_io.probe(path, backend)
    assert info.rotation == degrees
    assert (info.width, info.height) == ((64, 96) if degrees in (90, 270) else (96, 64))
    assert f"rotated {degrees}" in info.corrections[0]
    indices = [0, 17, 59, 17]
    frames = media_io.read_frames(path, indices, backend, info)
    assert frames.shape == (4, info.height, info.width, 3)
    check_frames(frames, indices, degrees)
    player = player_frames(path, info.width, info.height)  # ffmpeg's autorotate
    assert np.abs(frames.astype(int) - player[indices]).mean() < 3
    [item] = AssignBuckets(64 * 64, 16).process([{"info": info, "frames": 1}])
    bucket = (item["bucket"].width, item["bucket"].height)
    assert bucket == resolution_bucket(info.width, info.height, 64 * 64, 16)
    assert (bucket[0] < bucket[1]) == (degrees in (90, 270))  # portrait buckets for portrait display


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("name", list(MIRRORS))
def test_mirrored_display_matrix_is_applied_and_reported_exactly(files, name, backend):
    path = files[name]
    info = media_io.probe(path, backend)
    assert info.mirrored
    assert info.corrections[0].startswith(MIRROR_WORDS[name]), info.corrections
    assert not any(c.startswith("rotated 180") for c in info.corrections)  # the old, false report of a mirror
    indices = [3, 31, 58]
    frames = media_io.read_frames(path, indices, backend, info)
    player = player_frames(path, info.width, info.height)  # ffmpeg's autorotate applies flips as well
    assert frames.shape == player[indices].shape
    assert [frame_number(f) for f in frames] == indices
    for ours, theirs in zip(frames, player[indices]):
        assert corner_names(ours) == corner_names(theirs)
    assert np.abs(frames.astype(int) - player[indices]).mean() < 3
    assert "display_matrix" in dict(info.frame_rule)  # both readers trained these wrong before: new entries


def test_rotated_av1_that_only_pyav_reads_is_upright_and_gets_new_cache_entries(files):
    if "av1_rot90" not in files:
        pytest.skip("the bundled ffmpeg has no AV1 encoder; the PyAV path is covered by backend='pyav' above")
    path = files["av1_rot90"]
    with pytest.raises(media_io.MediaError):
        media_io.read_frames(path, [0], "decord")  # decord cannot open it, so 'auto' falls back to PyAV
    info = media_io.probe(path)
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    frames = media_io.read_frames(path, [0, 30, 59], "auto", info)
    check_frames(frames, [0, 30, 59], 90)
    # Cache format 1 trained this file sideways (PyAV did not rotate): its entries must not be reused.
    assert dict(info.frame_rule) == {"rotation": "90"}


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_non_square_pixels_are_stretched_to_the_displayed_width_and_bucketed_by_it(files, backend):
    path = files["sar"]
    info = media_io.probe(path, backend)
    assert (info.width, info.height) == (128, 64)  # 96x64 stored at 4:3 pixels is shown 128x64
    assert "SAR 4:3 -> 128x64" in info.corrections
    indices = [5, 44]
    frames = media_io.read_frames(path, indices, backend, info)
    check_frames(frames, indices, 0)
    player = player_frames(path, 128, 64, scale_width=True)
    assert np.abs(frames.astype(int) - player[indices]).mean() < 4
    [item] = AssignBuckets(64 * 64, 16).process([{"info": info, "frames": 1}])
    assert (item["bucket"].width, item["bucket"].height) == resolution_bucket(128, 64, 64 * 64, 16)
    assert item["bucket"].width / item["bucket"].height == pytest.approx(2, rel=0.1)  # not the stored 3:2


def nearest_by_search(times: list[float], target_fps: float, count: int) -> list[int]:
    """The frame nearest in time to each target time, by exhaustive search (earlier frame on ties)."""
    return [min(range(len(times)), key=lambda k: (abs(times[k] - i / target_fps), k)) for i in range(count)]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_variable_rate_windows_take_the_frame_shown_at_each_target_time(files, backend):
    path = files["vfr"]
    info = media_io.probe(path, backend)
    assert info.frame_count == 60 and info.timestamps is not None
    assert np.allclose(info.timestamps, VFR_TIMES, atol=1e-3)
    assert any("variable frame rate" in c and "planned on timestamps" in c for c in info.corrections)
    report = DataReport()
    items = PlanWindows(report, 24, 17, "chunk", 9, 1, 1).process([{"path": path, "info": info}])
    expected = nearest_by_search(VFR_TIMES, 24, 17 * len(items))
    planned = [i for item in items for i in item["source_indices"]]
    assert planned == expected
    assert len(items) == 4  # 3 s at 24 fps = 72 frames: four 17-frame windows
    # The average-rate formula would have played the 30 fps part slow and the 15 fps part fast.
    assert resampled_source_indices(60, info.fps, 24)[: len(planned)] != planned
    for item in items:
        frames = media_io.read_frames(path, item["source_indices"], backend, info)
        check_frames(frames, item["source_indices"], 0)


def test_edit_list_counts_and_reads_only_the_shown_frames(files):
    path = files["edit"]
    player = player_frames(path, 96, 64)
    shown = [frame_number(f) for f in player]
    assert shown == list(range(15, 60))  # -ss 0.5 at 30 fps: the player starts at frame 15
    info = media_io.probe(path)
    assert info.frame_count == len(shown) and info.hidden_frames > 0
    assert any(c.startswith("edit list:") for c in info.corrections)
    every = list(range(info.frame_count))
    for backend in ("auto", "pyav"):
        check_frames(media_io.read_frames(path, every, backend, info), shown, 0)
    # The last window of a chunked plan is readable (it ran past the end before).
    items = PlanWindows(DataReport(), 30, 9, "chunk", 99, 1, 1).process([{"path": path, "info": info}])
    last = items[-1]["source_indices"]
    check_frames(media_io.read_frames(path, last, "auto", info), [shown[i] for i in last], 0)
    with pytest.raises(media_io.MediaError, match="edit list"):
        media_io.read_frames(path, [0], "decord", info)


@pytest.mark.parametrize("name,backend", [("base", "decord"), ("base", "pyav"), ("edit", "auto"), ("edit", "pyav")])
def test_single_frame_reads_equal_a_batch_read_of_the_same_indices(files, name, backend):
    path = files[name]
    info = media_io.probe(path)
    indices = [40, 3, 27, 27, 12, info.frame_count - 1]
    batch = media_io.read_frames(path, indices, backend, info)
    singles = np.stack([media_io.read_frames(path, [i], backend, info)[0] for i in indices])
    assert np.array_equal(batch, singles)
    first = frame_number(media_io.read_frames(path, [0], backend, info)[0])
    assert [frame_number(f) for f in batch] == [first + i for i in indices]


def format_1_key(path, indices, bucket=(17, 64, 64)) -> str:
    """The latent key exactly as cache format 1 computed it (before the frames-as-shown rule)."""
    parts = {
        "kind": "video",
        "source": file_identity(path),
        "indices": indices,
        "size": list(bucket),
        "resize": RESIZE_METHOD,
        "encoder": "enc",
    }
    return cache_key(parts)


def test_the_cache_key_changes_for_exactly_the_files_whose_frames_change(files):
    from modules.data.clips.buckets import Bucket

    stage = CacheLatents(None, None, "enc", DataReport())
    indices = list(range(17))
    unchanged = ["base", "rot90", "rot180"]  # decord rotated these already; same frames as before
    changed = ["sar", "edit"] + (["av1_rot90"] if "av1_rot90" in files else [])
    for name in unchanged + changed:
        path = files[name]
        item = {"path": path, "info": media_io.probe(path), "source_indices": indices, "bucket": Bucket(17, 64, 64)}
        same = stage.key(item) == format_1_key(path, indices)
        assert same == (name in unchanged), name


def test_probe_stage_reports_per_file_what_was_corrected(files):
    report = DataReport()
    names = ["base", "rot90", "sar", "vfr", "edit"]
    ProbeMedia(report).process([{"path": files[n]} for n in names])
    corrected = {path.name: what for path, what in report.corrected.items()}
    assert set(corrected) == {"rot90.mp4", "sar.mp4", "vfr.mp4", "edit.mp4"}
    assert corrected["sar.mp4"] == ["SAR 4:3 -> 128x64"]
    summary = report.summary()
    assert "rot90.mp4: rotated 90" in summary and "planned on timestamps" in summary


def test_edit_listed_windows_are_reached_by_seeking_and_match_the_player_at_every_position(tmp_path):
    import av

    from modules.data.media import video_readers

    base = write_pattern_video(tmp_path / "long.mp4", count=70, extra=("-g", "8"))  # keyframes every 8 frames
    path = trimmed(base, tmp_path / "long_edit.mp4", 0.5)
    info = media_io.probe(path)
    player = player_frames(path, 96, 64)
    assert info.hidden_frames > 0 and len(info.pts) == info.frame_count == len(player)
    for window in ([0, 1, 2, 3], [20, 22, 24], [info.frame_count - 3, info.frame_count - 1], [1, 50]):
        with av.open(str(path)) as container:
            sought = video_readers._decode_by_seeking(container, container.streams.video[0], window, info)
        assert sought is not None, window  # found by a seek, not by the decode-from-start fallback
        frames = media_io.read_frames(path, window, "auto", info)
        assert np.array_equal(np.stack([sought[i] for i in window]), frames)
        assert np.abs(frames.astype(int) - player[window]).mean() < 3


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_non_square_pixels_are_resized_once_to_the_bucket(files, backend):
    import torch

    from modules.data.clips.buckets import resize_and_crop

    info = media_io.probe(files["sar"])  # 96x64 stored, shown 128x64
    window = media_io.read_window(files["sar"], [4, 9], 64, 32, backend, info)
    # Reference: ffmpeg scales the stored frames straight to the cover size of the 64x32 bucket (64x32 here).
    reference = player_frames(files["sar"], 64, 32, scale_width=True)[[4, 9]]
    expected = torch.from_numpy(reference).permute(3, 0, 1, 2).float() / 127.5 - 1
    assert window.shape == (3, 2, 32, 64)
    assert (window - expected).abs().mean() < 0.04
    # Square pixels: exactly what resize_and_crop of the displayed frames gives, so their cache entries stay.
    base = media_io.probe(files["base"])
    frames = media_io.read_frames(files["base"], [4, 9], backend, base)
    assert torch.equal(
        media_io.read_window(files["base"], [4, 9], 64, 48, backend, base), resize_and_crop(frames, 64, 48)
    )
