"""Captioning's parts that need no generation: the frames given to the model are the trainer's, the checkpoint's
class, and the keep/overwrite/model-error rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from media_fixtures import frame_number, write_pattern_video

from modules.data.clips.buckets import resolution_bucket
from modules.data.flow.report import DataReport
from modules.data.flow.video_dataset import DatasetSettings
from modules.data.sources.concepts import Concept
from modules.dataset_tools.caption import CaptionSettings, caption_files, files_to_caption
from modules.dataset_tools.caption_frames import caption_frames
from modules.dataset_tools.caption_model import CaptionModelError, load_model
from modules.dataset_tools.check import plan_items
from modules.dataset_tools.data_settings import LabelledConcept

SETTINGS = DatasetSettings(target_fps=16, window_frames=17, target_area=64 * 64, pixel_multiple=16)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_pattern_video(folder / "a.mp4", count=45, fps=30)  # 96x64
    write_pattern_video(folder / "b.mp4", count=30, fps=24, width=64, height=96)
    return folder


def test_frames_given_to_the_model_are_the_trainers_window(clips):
    plan = LabelledConcept(Concept(clips, caption_source="text", caption_text="x"), SETTINGS, "clips")
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
    plan = LabelledConcept(Concept(clips), SETTINGS, "clips")
    missing = str(tmp_path / "no_model")
    results = caption_files(files_to_caption([plan]), CaptionSettings(model=missing))
    assert [r["status"] for r in results] == ["kept (has a caption)"] * 2
    assert (clips / "a.txt").read_text() == "an existing caption"
    with pytest.raises(CaptionModelError, match="no_model"):
        caption_files(files_to_caption([plan]), CaptionSettings(model=missing, overwrite=True))
    assert (clips / "a.txt").read_text() == "an existing caption"


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from tiny_qwen_vl import write_tiny_qwen_vl

    root = tmp_path_factory.mktemp("captioners")
    return {t: write_tiny_qwen_vl(root / t, t) for t in ("qwen2_5_vl", "qwen3_vl")}


@pytest.mark.parametrize(
    "model_type, class_name",
    [("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration"), ("qwen3_vl", "Qwen3VLForConditionalGeneration")],
)
def test_the_model_class_comes_from_the_checkpoint_config_and_loads_its_weights(
    tiny_checkpoints, model_type, class_name, tmp_path
):
    from safetensors.torch import load_file

    folder = tiny_checkpoints[model_type]
    model, device = load_model(str(folder), allow_download=False, device="cpu")
    assert type(model).__name__ == class_name and device.type == "cpu" and not model.training
    # Round trip: the loaded weights, saved again, are the checkpoint's tensors under the checkpoint's names.
    model.save_pretrained(tmp_path / "again")
    saved, again = load_file(folder / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert saved.keys() == again.keys() and all(torch.equal(saved[name], again[name]) for name in saved)


def test_unsupported_models_missing_checkpoints_and_cpu_quantisation_are_named(tiny_checkpoints, tmp_path):
    other = tmp_path / "text_only"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CaptionModelError, match="'bert' is not a supported captioner"):
        load_model(str(other), allow_download=False)
    # Not in the cache and no --allow-download: named, and nothing is fetched.
    with pytest.raises(CaptionModelError, match="--allow-download"):
        load_model("someone/not-a-cached-model", allow_download=False)
    with pytest.raises(CaptionModelError, match="need a CUDA GPU"):
        load_model(str(tiny_checkpoints["qwen2_5_vl"]), allow_download=False, quantize="4bit", device="cpu")


def test_a_checkpoint_without_processor_files_or_chat_template_is_named(tiny_checkpoints):
    from tiny_qwen_vl import write_tiny_processor

    from modules.dataset_tools.caption_model import load_captioner

    folder = tiny_checkpoints["qwen3_vl"]
    with pytest.raises(CaptionModelError, match="no preprocessor_config.json"):
        load_captioner(str(folder), False, "none", "cpu", "auto")
    write_tiny_processor(folder, "qwen3_vl")
    (folder / "chat_template.jinja").unlink()
    with pytest.raises(CaptionModelError, match="no chat template"):
        load_captioner(str(folder), False, "none", "cpu", "auto")
