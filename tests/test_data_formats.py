"""Every format a camera, phone or download writes: AVCHD/MPEG-TS, 3GPP, TIFF, animated WebP/GIF, files known by
content only; and every file of a concept folder that is not used is named with the reason."""

import shutil

import numpy as np
import pytest
from PIL import Image

from modules.data.flow.report import DataReport
from modules.data.media import media_io
from modules.data.media.folder_walk import NOT_MEDIA, SUBFOLDER_NOT_READ
from modules.data.sources.concepts import Concept, collect_media
from tests.media_fixtures import corner_names, ffmpeg, frame_number, pattern, player_frames, write_pattern_video

SMALL = {"count": 24, "width": 64, "height": 48}


@pytest.mark.parametrize("suffix,muxer", [(".m2ts", "mpegts"), (".mts", "mpegts"), (".ts", "mpegts"), (".3gp", "3gp")])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_camera_and_phone_containers_are_read_as_played(tmp_path, suffix, muxer, backend):
    path = write_pattern_video(tmp_path / f"camera{suffix}", **SMALL, extra=("-f", muxer))
    assert media_io.is_media(path)
    info = media_io.probe(path, backend)
    assert (info.frame_count, info.width, info.height) == (24, 64, 48)
    indices = [0, 11, 23, 5]
    if backend == "decord" and info.container == "mpegts":  # decord's seeks land on other frames: refused
        with pytest.raises(media_io.MediaError, match="inexactly"):
            media_io.read_frames(path, indices, backend, info)
        backend = "auto"  # ... and 'auto' reads it with PyAV
    frames = media_io.read_frames(path, indices, backend, info)
    player = player_frames(path, 64, 48)
    assert [frame_number(f) for f in frames] == indices
    assert np.abs(frames.astype(int) - player[indices]).mean() < 3


def test_tiff_is_an_image_and_a_multi_page_tiff_says_which_page_is_used(tmp_path):
    single, pages = tmp_path / "scan.tif", tmp_path / "pages.tiff"
    Image.fromarray(pattern(3)).save(single)
    Image.fromarray(pattern(5)).save(pages, save_all=True, append_images=[Image.fromarray(pattern(9))])
    info = media_io.probe(single)
    assert info.is_image and (info.width, info.height) == (96, 64) and not info.corrections
    assert np.array_equal(media_io.read_frames(single, [0])[0], pattern(3))  # lossless: exactly what was written
    info = media_io.probe(pages)
    assert info.corrections == ("multi-page TIFF: the first of 2 pages is used",)
    assert frame_number(media_io.read_frames(pages, [0], info=info)[0]) == 5


@pytest.mark.parametrize("backend", ["decord", "pyav"])  # Pillow reads animations whatever the backend
def test_animated_webp_is_a_video_at_its_own_frame_durations(tmp_path, backend):
    path = tmp_path / "sticker.webp"
    durations = [40, 40, 40, 80, 80, 40]  # ms: a variable rate
    frames = [Image.fromarray(pattern(n, 48, 32)) for n in range(6)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, lossless=True, loop=0)
    info = media_io.probe(path, backend)
    assert not info.is_image and info.animated and info.frame_count == 6
    assert info.corrections[0] == "animated WEBP: 6 frames read as a video (Pillow)"
    assert np.allclose(info.timestamps, np.cumsum([0, *durations[:-1]]) / 1000)
    decoded = media_io.read_frames(path, [5, 0, 3], backend, info)
    assert np.array_equal(decoded, np.stack([pattern(n, 48, 32) for n in (5, 0, 3)]))  # lossless round trip


def test_animated_gif_matches_ffmpegs_playback_and_a_one_frame_gif_is_an_image(tmp_path):
    path = write_pattern_video(tmp_path / "loop.gif", count=8, fps=10, width=48, height=32, codec=())
    info = media_io.probe(path)
    assert info.animated and info.frame_count == 8 and info.fps == pytest.approx(10)
    ours = media_io.read_frames(path, list(range(8)), info=info)
    player = player_frames(path, 48, 32)
    assert len(player) == 8 and np.abs(ours.astype(int) - player).mean() < 2
    assert [corner_names(f) for f in ours] == [corner_names(f) for f in player]
    still = tmp_path / "still.gif"
    Image.fromarray(pattern(4)).save(still)
    assert media_io.probe(still).is_image


def test_files_are_used_by_content_and_every_unused_file_is_named(tmp_path):
    folder = tmp_path / "concept"
    (folder / "extra").mkdir(parents=True)
    clip = write_pattern_video(folder / "clip.mp4", **SMALL)
    shutil.copy(clip, folder / "camera_export.video")  # an unlisted extension holding H.264
    Image.fromarray(pattern(2)).save(folder / "photo.img", format="PNG")
    for stem in ("clip", "camera_export", "photo", "orphan"):
        (folder / f"{stem}.txt").write_text(f"a caption of {stem}")
    (folder / "notes.md").write_text("# shot list\n")
    (folder / "old_notes.md").symlink_to(tmp_path / "deleted.md")  # a broken link, named too
    (folder / "extra" / "more.mp4").write_bytes(clip.read_bytes())
    report = DataReport()
    items = collect_media(Concept(folder), report)
    assert sorted(i.path.name for i in items) == ["camera_export.video", "clip.mp4", "photo.img"]
    assert media_io.probe(folder / "camera_export.video").frame_count == 24
    assert media_io.probe(folder / "photo.img").is_image
    unused = {s.path.name: s.reason for s in report.unused}
    assert unused == {
        "extra": SUBFOLDER_NOT_READ,
        "notes.md": NOT_MEDIA,
        "orphan.txt": "a caption file with no image or video of the same name",
        "old_notes.md": f"a broken link to {tmp_path / 'deleted.md'}",
    }
    summary = report.summary()
    assert "4 file(s) in concept folders not used" in summary
    assert all(str(folder / name) in summary for name in unused)


def test_caption_files_are_unused_when_captions_come_from_file_names(tmp_path):
    Image.fromarray(pattern(1)).save(tmp_path / "a_red_ball.png")
    (tmp_path / "a_red_ball.txt").write_text("ignored")
    report = DataReport()
    [item] = collect_media(Concept(tmp_path, caption_source="filename"), report)
    assert item.caption == "a red ball"
    assert [(s.path.name, "caption_source" in s.reason) for s in report.unused] == [("a_red_ball.txt", True)]


def interlaced_video(path, codec=("-c:v", "libx264", "-crf", "4", "-x264opts", "tff=1")):
    """20 progressive frames at 60 fps woven into 10 interlaced frames at 30 fps, top field first: every stored
    frame holds two moments (frame numbers 2k and 2k+1), the combing a player's deinterlacer removes."""
    return write_pattern_video(
        path,
        count=20,
        fps=60,
        codec=codec,
        filters="tinterlace=interleave_top,setfield=tff",
        extra=("-flags", "+ildct+ilme"),
    )


def combing(frame) -> float:
    """Mean difference between neighbouring rows of the centre patch minus that between rows two apart."""
    centre = frame[24:40, 40:56].astype(float).mean(axis=2)
    return np.abs(np.diff(centre, axis=0)).mean() - np.abs(centre[2:] - centre[:-2]).mean() / 2


@pytest.mark.parametrize("name,codec", [("h264.mp4", None), ("avchd.m2ts", ("-c:v", "mpeg2video", "-q:v", "2"))])
def test_interlaced_video_is_deinterlaced_by_its_field_order_as_a_player_does(tmp_path, name, codec):
    path = interlaced_video(tmp_path / name, *([codec] if codec else []))
    info = media_io.probe(path)
    assert info.frame_count == 10
    assert info.corrections == ("interlaced (top field first): deinterlaced with bwdif, one frame per frame",)
    assert info.video_filter == "bwdif=mode=send_frame:parity=tff:deint=interlaced"
    with pytest.raises(media_io.MediaError, match="decord cannot apply the filter"):
        media_io.read_frames(path, [0], "decord", info)
    ours = media_io.read_frames(path, list(range(10)), "auto", info)
    # The player: ffmpeg with its field-order-aware deinterlacer, one frame per frame.
    raw = ffmpeg(
        "-i", str(path), "-vf", "bwdif=mode=send_frame:parity=auto", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"
    )
    player = np.frombuffer(raw, np.uint8).reshape(-1, 64, 96, 3)
    assert len(player) == 10 and np.abs(ours.astype(int) - player).mean() < 1
    stored = player_frames(path, 96, 64)  # no deinterlacer: the combed frames a plain decode gives
    assert np.mean([combing(f) for f in stored]) > 3 * np.mean([combing(f) for f in ours])  # the combing is gone
    assert np.array_equal(media_io.read_frames(path, [7, 3], "pyav", info), ours[[7, 3]])  # seek path: the same


def test_hdr_video_is_reported_with_the_command_that_converts_it(tmp_path):
    path = write_pattern_video(
        tmp_path / "hdr.mp4",
        count=6,
        codec=(
            "-c:v",
            "libx264",
            "-crf",
            "8",
            "-x264-params",
            "transfer=smpte2084:colorprim=bt2020:colormatrix=bt2020nc",
        ),
    )
    info = media_io.probe(path)
    [hdr] = [c for c in info.corrections if c.startswith("HDR")]
    assert "PQ (SMPTE 2084): NOT tone-mapped" in hdr
    # The advice works with the bundled ffmpeg and its result is SDR.
    command = (
        hdr.split("convert it to SDR first: ffmpeg ")[1]
        .replace("IN", str(path))
        .replace("OUT.mp4", str(tmp_path / "sdr.mp4"))
    )
    ffmpeg(*command.split())
    assert not any(c.startswith("HDR") for c in media_io.probe(tmp_path / "sdr.mp4").corrections)
