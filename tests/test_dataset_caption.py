"""Captioning's parts that run without torchvision (which transformers' Qwen-VL processors need, and which is
not installed here): the frames given to the model are the trainer's, and the keep/overwrite/model-error rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_fixtures import frame_number, write_pattern_video

from modules.data.buckets import resolution_bucket
from modules.data.concepts import Concept
from modules.data.report import DataReport
from modules.data.video_dataset import DatasetSettings
from modules.dataset_tools.caption import CaptionSettings, caption_files, files_to_caption
from modules.dataset_tools.caption_frames import caption_frames
from modules.dataset_tools.caption_model import CaptionModelError
from modules.dataset_tools.check import plan_items
from modules.dataset_tools.data_settings import ConceptPlan

SETTINGS = DatasetSettings(target_fps=16, window_frames=17, target_area=64 * 64, pixel_multiple=16)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_pattern_video(folder / "a.mp4", count=45, fps=30)  # 96x64
    write_pattern_video(folder / "b.mp4", count=30, fps=24, width=64, height=96)
    return folder


def test_frames_given_to_the_model_are_the_trainers_window(clips):
    plan = ConceptPlan(Concept(clips, caption_source="text", caption_text="x"), SETTINGS, "clips")
    windows = {item["path"]: item for item in plan_items(plan, DataReport())}
    for path, item in windows.items():
        frames, rate, indices = caption_frames(path, SETTINGS, sample_frames=5)
        window = list(item["source_indices"])
        assert indices == [window[i] for i in (0, 4, 8, 12, 16)]  # evenly over the 17-frame window, in order
        assert [frame_number(f) for f in frames] == indices  # the pixels are those frames, in that order
        info = item["info"]
        width, height = resolution_bucket(info.width, info.height, 64 * 64, 16)
        assert frames.shape == (5, height, width, 3)
        assert rate == pytest.approx(4 / (16 / 16))  # 5 frames over 16 trained-rate intervals at 16 fps


def test_existing_captions_are_kept_without_loading_a_model_and_a_missing_model_is_named(clips, tmp_path):
    for path in clips.glob("*.mp4"):
        path.with_suffix(".txt").write_text("an existing caption")
    plan = ConceptPlan(Concept(clips), SETTINGS, "clips")
    missing = str(tmp_path / "no_model")
    results = caption_files(files_to_caption([plan]), CaptionSettings(model=missing))
    assert [r["status"] for r in results] == ["kept (has a caption)"] * 2
    assert (clips / "a.txt").read_text() == "an existing caption"
    with pytest.raises(CaptionModelError, match="no_model"):
        caption_files(files_to_caption([plan]), CaptionSettings(model=missing, overwrite=True))
    assert (clips / "a.txt").read_text() == "an existing caption"
