"""Concept folders: captions that are not UTF-8, symlink loops and broken links, and an empty folder's message."""

import os

import pytest
from PIL import Image

from modules.data.flow.report import DataReport
from modules.data.sources.concepts import Concept, DataError, collect_media
from tests.media_fixtures import pattern


def image(path, caption: bytes | None = b"a grey card"):
    Image.fromarray(pattern(1)).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_bytes(caption)
    return path


def test_a_caption_that_is_not_utf8_is_skipped_with_a_counted_warning_naming_it(tmp_path):
    good = image(tmp_path / "good.png")
    bad = image(tmp_path / "latin1.png", "une caf\xe9 cr\xe8me".encode("latin-1"))
    bom = image(tmp_path / "bom.png", "\ufeffwith a byte-order mark".encode())
    report = DataReport()
    items = collect_media(Concept(tmp_path), report)
    assert [item.path for item in items] == [bom, good]
    assert items[0].caption == "with a byte-order mark"  # the mark is not part of the caption
    assert report.skipped_paths("unreadable caption") == [bad]
    assert "latin1.txt is not valid UTF-8 (byte 0xe9 at offset 7)" in report.skipped[0].reason
    assert "1 unreadable caption" in report.summary()


@pytest.mark.parametrize("fallback", ["skip", "use_text"])
def test_a_bad_caption_is_not_replaced_by_the_fallback_text(tmp_path, fallback):
    bad = image(tmp_path / "bad.png", b"\xff\xfe\x00broken")
    report = DataReport()
    assert collect_media(Concept(tmp_path, on_missing_caption=fallback, caption_text="generic"), report) == []
    assert report.skipped_paths("unreadable caption") == [bad]


def test_a_bad_caption_under_on_missing_caption_error_stops_with_the_file_and_the_fix(tmp_path):
    image(tmp_path / "bad.png", b"caf\xe9")
    with pytest.raises(DataError, match=r"bad\.png: bad\.txt is not valid UTF-8.*Fix: save the caption as UTF-8"):
        collect_media(Concept(tmp_path, on_missing_caption="error"), DataReport())


def test_symlink_loops_and_broken_links_are_reported_and_linked_folders_read_once(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    top = image(data / "top.png")
    nested = image(data / "sub" / "nested.png")
    linked = image(outside / "linked.png")
    (data / "sub" / "back_to_top").symlink_to(data, target_is_directory=True)  # a loop
    (data / "more").symlink_to(outside, target_is_directory=True)  # an ordinary linked folder: followed
    os.symlink(data / "ping.mp4", data / "pong.mp4")
    os.symlink(data / "pong.mp4", data / "ping.mp4")  # a loop of two file links
    os.symlink(tmp_path / "gone.mp4", data / "dangling.mp4")
    report = DataReport()
    items = collect_media(Concept(data, include_subdirectories=True), report)
    assert sorted(item.path for item in items) == sorted([top, nested, data / "more" / linked.name])
    assert sorted(report.skipped_paths("symlink loop")) == sorted(
        [data / "sub" / "back_to_top", data / "ping.mp4", data / "pong.mp4"]
    )
    assert report.skipped_paths("broken symlink") == [data / "dangling.mp4"]
    assert any(s.reason.endswith("gone.mp4, which does not exist") for s in report.skipped)
    assert "symlink loop" in report.summary()


def test_an_empty_concept_folder_lists_the_accepted_extensions(tmp_path):
    (tmp_path / "photo.heic").write_bytes(b"not read")
    report = DataReport()
    assert collect_media(Concept(tmp_path), report) == []
    [note] = report.notes
    assert "no videos or images found" in note
    for extension in (".mp4", ".mov", ".webm", ".gif", ".png", ".jpg", ".webp"):
        assert extension in note
    assert note in report.summary()  # the "no usable training items" error quotes the summary
