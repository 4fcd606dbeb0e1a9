"""`scripts/dataset.py split` on real media made by the bundled ffmpeg: cuts at known frames, clips that play as
the source does (rotation, pixel aspect), stream copies and re-encodes, reruns that skip, sources untouched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from dataset_cli import load_cli
from media_fixtures import ffmpeg, frame_number, player_frames, trimmed, with_rotation, write_pattern_video

from modules.data.clips.frame_windows import resampled_source_indices
from modules.data.media.media_io import probe
from modules.dataset_tools.clip_plan import LengthBounds, bounds_from_training_frames, plan_clips
from modules.dataset_tools.split import SplitSettings, split_sources

REPO = Path(__file__).resolve().parent.parent
SHOT_COLOURS = [(230, 40, 40), (20, 20, 90), (240, 240, 200), (30, 150, 30)]
CUTS = [37, 83, 121]  # first frames of shots 2, 3 and 4
TOTAL = 150


def shot_of(frame: int) -> int:
    return sum(frame >= cut for cut in CUTS)


def shot_frame(index: int) -> np.ndarray:
    frame = np.full((48, 64, 3), SHOT_COLOURS[shot_of(index)], np.uint8)
    frame[20:28, index % 50 : index % 50 + 8] = 255  # motion inside a shot, so no shot is a still
    return frame


def packet_times(path: Path) -> np.ndarray:
    """The shown frames' presentation times from the first, read from the packets (not the probe's rate)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and not p.is_discard)
        return np.array([float((t - pts[0]) * stream.time_base) for t in pts])


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """Hard cuts at CUTS; keyframes forced at the first two cuts only and no scene-cut keyframes, so the
    clips of the first two shots can be stream copies and the last two must be re-encoded."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    raw = b"".join(shot_frame(i).tobytes() for i in range(TOTAL))
    ffmpeg(
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48", "-r", "30", "-i", "-"),
        *("-c:v", "libx264", "-crf", "10", "-g", "300", "-sc_threshold", "0", "-bf", "2"),
        *("-force_key_frames", f"expr:eq(n,{CUTS[0]})+eq(n,{CUTS[1]})", "-pix_fmt", "yuv420p", str(path)),
        data=raw,
    )
    return path


def test_hard_cuts_become_clip_boundaries_and_each_clip_holds_one_shot(long_clip, tmp_path):
    before = checksum(long_clip)
    settings = SplitSettings(tmp_path / "clips", min_seconds=0.5, max_seconds=None)
    results, _ = split_sources([long_clip], settings)

    edges = [0, *CUTS, TOTAL]
    assert len(results) == len(edges) - 1
    for result, start, end in zip(results, edges[:-1], edges[1:]):
        assert abs(result["start_frame"] - start) <= 1 and abs(result["end_frame"] - end) <= 1
        clip = Path(result["clip"])
        info = probe(clip)
        assert info.frame_count == result["end_frame"] - result["start_frame"]
        frames = player_frames(clip, 64, 48)
        colours = frames[:, :16, :16].reshape(len(frames), -1, 3).mean(axis=1)  # a corner the bar never crosses
        expected = np.array([SHOT_COLOURS[shot_of(result["start_frame"])]] * len(frames))
        assert np.abs(colours - expected).max() < 12, f"{clip.name} holds frames of another shot"
        sidecar = json.loads(clip.with_suffix(".json").read_text())
        assert sidecar["source"] == str(long_clip.resolve())
        assert sidecar["start_time"] == pytest.approx(result["start_frame"] / 30, abs=1e-6)
        assert sidecar["end_time"] == pytest.approx(result["end_frame"] / 30, abs=1e-6)
    methods = [r["method"] for r in results]
    assert methods == ["stream copy", "stream copy", "re-encode", "re-encode"]
    source = player_frames(long_clip, 64, 48)
    for result in results[:2]:  # a stream copy is bit-exact
        copied = player_frames(Path(result["clip"]), 64, 48)
        assert np.array_equal(copied, source[result["start_frame"] : result["end_frame"]])

    mtimes = {r["clip"]: Path(r["clip"]).stat().st_mtime_ns for r in results}
    again, _ = split_sources([long_clip], settings)
    assert [r["status"] for r in again] == ["skipped (already done)"] * len(results)
    assert {r["clip"]: Path(r["clip"]).stat().st_mtime_ns for r in again} == mtimes
    assert checksum(long_clip) == before
    assert not list((tmp_path / "clips").glob(".*.tmp"))


def test_gap_and_maximum_length(long_clip, tmp_path):
    settings = SplitSettings(tmp_path / "clips", min_seconds=0.5, max_seconds=1.0, gap_seconds=0.1)
    ranges = [(r["start_frame"], r["end_frame"]) for r in split_sources([long_clip], settings)[0]]
    # gap 3 frames from each cut, at most 30 frames, pieces under 15 frames dropped
    assert ranges == [(0, 30), (40, 70), (86, 116), (124, 150)]


@pytest.fixture(scope="module")
def shown_sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shown")
    codec = ("-c:v", "libx264", "-crf", "4", "-g", "12", "-bf", "2")
    base = write_pattern_video(folder / "base.mp4", count=48, codec=codec)
    return {
        "vfr": write_pattern_video(
            folder / "vfr.mp4",
            count=48,
            codec=codec,
            filters="settb=1/30,setpts='if(lt(N,24),N,24+2*(N-24))'",  # 30 fps, then 15 fps, in exact ticks
            extra=("-fps_mode", "passthrough"),
        ),
        "rotated": with_rotation(base, folder / "rotated.mp4", 90),
        "edit_list": trimmed(base, folder / "edit_list.mp4", 0.5),  # frames before 0.5 s hidden by an edit list
        "anamorphic": write_pattern_video(folder / "anamorphic.mp4", count=48, codec=codec, filters="setsar=4/3"),
    }


@pytest.mark.parametrize("name", ["rotated", "anamorphic", "vfr", "edit_list"])
@pytest.mark.parametrize("reencode", [False, True])
def test_clips_play_as_the_source_does(shown_sources, tmp_path, name, reencode):
    source = shown_sources[name]
    before = checksum(source)
    info = probe(source)
    # crf 4: the frame counter is a grey level 3 steps per frame, which the default crf 18 can blur by one step
    settings = SplitSettings(tmp_path / "clips", 0.2, 0.8, always_reencode=reencode, crf=4)
    if name == "vfr":  # 0.8 s is 24 frames at the average rate (20 fps): 0.8 s of the 30 fps part, 1.6 s after
        settings = SplitSettings(tmp_path / "clips", 0.2, 1.2, always_reencode=reencode, crf=4)
    results, failures = split_sources([source], settings)
    assert not failures
    assert [(r["start_frame"], r["end_frame"]) for r in results] == [(0, 24), (24, info.frame_count)]
    # The edit list's first shown frame lies inside a GOP and no keyframe falls on a clip edge: re-encoded.
    assert {r["method"] for r in results} == {"re-encode" if reencode or name == "edit_list" else "stream copy"}
    scale = name == "anamorphic"
    shown = player_frames(source, info.width, info.height, scale_width=scale)
    for result in results:
        clip = Path(result["clip"])
        clip_info = probe(clip)
        assert (clip_info.width, clip_info.height) == (info.width, info.height)
        played = player_frames(clip, info.width, info.height, scale_width=scale)
        expected = shown[result["start_frame"] : result["end_frame"]]
        assert [frame_number(f) for f in played] == [frame_number(f) for f in expected]
        assert np.abs(played.astype(int) - expected.astype(int)).mean() < 3
        times = packet_times(source)[result["start_frame"] : result["end_frame"]]
        assert np.allclose(packet_times(clip), times - times[0], atol=1e-3)  # each frame keeps its time
    assert checksum(source) == before


def test_training_frame_bounds_match_the_pipeline_resampling():
    bounds = bounds_from_training_frames(30.0, 16.0, 17, 33)
    trained = [len(resampled_source_indices(n, 30.0, 16.0)) for n in (bounds.min_frames, bounds.max_frames)]
    assert trained == [17, 33]
    assert len(resampled_source_indices(bounds.min_frames - 1, 30.0, 16.0)) < 17
    assert len(resampled_source_indices(bounds.max_frames + 1, 30.0, 16.0)) > 33
    assert plan_clips([(0, 100)], 100, LengthBounds(10, 40), 0) == [(0, 40), (40, 80), (80, 100)]
    with pytest.raises(ValueError, match="4n\\+1"):
        bounds_from_training_frames(30.0, 16.0, 16, None)


@pytest.mark.slow  # a CLI subprocess imports torch: about 20 s on the shared machine
def test_cli_splits_and_reports_a_missing_input(long_clip, tmp_path, capsys):
    script = [sys.executable, str(REPO / "scripts" / "dataset.py"), "split"]
    done = subprocess.run(
        [*script, str(long_clip), "--out", str(tmp_path / "c"), "--min-seconds", "0.5", "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert [c["start_frame"] for c in json.loads(done.stdout)] == [0, *CUTS]
    assert load_cli().main(["split", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "nope.mp4" in err and "Traceback" not in err


def test_a_broken_video_in_a_folder_is_reported_and_the_others_are_split(long_clip, tmp_path):
    folder = tmp_path / "footage"
    folder.mkdir()
    (folder / "a_broken.mp4").write_text("not a video")
    (folder / "long.mp4").write_bytes(long_clip.read_bytes())
    results, failures = split_sources([folder], SplitSettings(tmp_path / "clips", min_seconds=0.5, max_seconds=None))
    assert [r["start_frame"] for r in results] == [0, *CUTS]
    assert len(failures) == 1 and failures[0].path == folder / "a_broken.mp4"
    assert not list((tmp_path / "clips").glob("a_broken*"))


@pytest.mark.parametrize("reencode", [False, True])
def test_colour_tags_travel_with_the_clips(tmp_path, reencode):
    tags = "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc:range=pc"
    codec = ("-c:v", "libx264", "-crf", "4", "-g", "12")
    source = write_pattern_video(tmp_path / "tagged.mp4", count=24, codec=codec, filters=tags)

    def colour(path: Path) -> tuple:
        with av.open(str(path)) as container:
            context = container.streams.video[0].codec_context
            return (
                int(context.color_primaries),
                int(context.color_trc),
                int(context.colorspace),
                int(context.color_range),
            )

    assert colour(source) == (9, 16, 9, 2)  # BT.2020, PQ, BT.2020 non-constant, full range: the tags were written
    settings = SplitSettings(tmp_path / "clips", 0.2, 0.4, always_reencode=reencode)
    results, _ = split_sources([source], settings)
    assert len(results) == 2 and {r["method"] for r in results} == {"re-encode" if reencode else "stream copy"}
    assert all(colour(Path(r["clip"])) == colour(source) for r in results)
