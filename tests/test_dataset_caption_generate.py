"""Captioning end to end with tiny random Qwen2.5-VL and Qwen3-VL checkpoints on disk, through the same loading code
as a real one: the pixels the model is given, batching, trigger words, keep/overwrite, and a SIGKILL mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from media_fixtures import pattern, write_pattern_video
from PIL import Image

from modules.data.flow.video_dataset import DatasetSettings
from modules.data.sources.concepts import Concept
from modules.dataset_tools.caption import CaptionSettings, caption_files, files_to_caption
from modules.dataset_tools.caption_frames import caption_frames
from modules.dataset_tools.data_settings import LabelledConcept
from modules.dataset_tools.qwen_vl_inputs import QwenVLInputs
from modules.dataset_tools.qwen_vl_patches import unpatchify

REPO = Path(__file__).resolve().parent.parent
SETTINGS = DatasetSettings(target_fps=16, window_frames=17, target_area=64 * 64, pixel_multiple=16)
SIZES = [(96, 64), (64, 96), (64, 64), (128, 64), (80, 80), (64, 112)]
FILES = len(SIZES) + 1  # and one image
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tiny_qwen_vl import write_tiny_processor, write_tiny_qwen_vl

    folder = write_tiny_qwen_vl(tmp_path_factory.mktemp("captioner") / "qwen2_5_vl")
    write_tiny_processor(folder)
    return folder


def make_clips(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, (width, height) in enumerate(SIZES):  # different sizes: different buckets, different captions
        write_pattern_video(folder / f"clip{index}.mp4", count=30, fps=30, width=width, height=height)
    Image.fromarray(pattern(7, 96, 64)).save(folder / "still.png")  # images go through the image processor
    return folder


def files_in(folder: Path):
    return files_to_caption([LabelledConcept(Concept(folder), SETTINGS, str(folder))])


def captions(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


def test_the_model_is_given_the_trainers_frames_and_batches_caption_as_single_files(checkpoint, tmp_path, monkeypatch):
    clips = make_clips(tmp_path / "clips")
    built = []
    real_build = QwenVLInputs.build

    def recording_build(self, items, instruction):  # the real builder runs; what it gives the model is kept
        batch = real_build(self, items, instruction)
        built.append((self.video_grid, batch))
        return batch

    monkeypatch.setattr(QwenVLInputs, "build", recording_build)
    one = CaptionSettings(model=str(checkpoint), max_new_tokens=12, sample_frames=4, batch_size=1)
    caption_files(files_in(clips), one)
    singles = captions(clips)
    assert len(singles) == FILES and len(set(singles.values())) > 1  # the captions depend on the pixels
    videos = [(grid, batch) for grid, batch in built if "pixel_values_videos" in batch]
    assert len(videos) == len(SIZES)
    for path, (grid, batch) in zip(sorted(clips.glob("*.mp4")), videos):
        expected, _, _ = caption_frames(path, SETTINGS, 4)
        thw = tuple(batch["video_grid_thw"][0].tolist())
        mean, std = torch.tensor(grid.image_mean).view(1, 3, 1, 1), torch.tensor(grid.image_std).view(1, 3, 1, 1)
        pixels = unpatchify(batch["pixel_values_videos"], thw, grid) * std + mean
        given = (pixels * 255).round().byte().permute(0, 2, 3, 1).numpy()
        assert given.shape == expected.shape and np.array_equal(given, expected)

    batched = CaptionSettings(model=str(checkpoint), max_new_tokens=12, sample_frames=4, batch_size=4, overwrite=True)
    caption_files(files_in(clips), batched)
    assert captions(clips) == singles


def test_trigger_words_keep_and_overwrite(checkpoint, tmp_path):
    clips = make_clips(tmp_path / "clips")
    plain = CaptionSettings(model=str(checkpoint), max_new_tokens=12, sample_frames=4)
    caption_files(files_in(clips), plain)
    bare = captions(clips)
    (clips / "clip0.txt").write_text("written by hand")
    (clips / "clip1.txt").write_text("  \n")  # empty counts as missing
    for name in bare:
        if name not in ("clip0.txt", "clip1.txt"):
            (clips / name).unlink()
    tagged = CaptionSettings(
        model=str(checkpoint), max_new_tokens=12, sample_frames=4, prefix="mystyle, ", suffix=" [end]"
    )
    results = caption_files(files_in(clips), tagged)
    assert [r["status"] for r in results] == ["kept (has a caption)"] + ["written"] * (FILES - 1)
    after = captions(clips)
    assert after["clip0.txt"] == "written by hand"
    for name in after:
        if name != "clip0.txt":
            assert after[name] == f"mystyle, {bare[name]} [end]".strip()
    caption_files(files_in(clips), CaptionSettings(**{**tagged.__dict__, "overwrite": True}))
    assert captions(clips)["clip0.txt"] == f"mystyle, {bare['clip0.txt']} [end]".strip()


@pytest.mark.slow
def test_a_kill_mid_run_leaves_whole_captions_and_the_rerun_finishes(checkpoint, tmp_path):
    reference = make_clips(tmp_path / "reference")
    caption_files(files_in(reference), CaptionSettings(model=str(checkpoint), max_new_tokens=12, sample_frames=4))
    expected = captions(reference)

    clips = make_clips(tmp_path / "clips")
    command = [sys.executable, str(REPO / "scripts" / "dataset.py"), "caption", str(clips), "--model", str(checkpoint)]
    command += ["--max-new-tokens", "12", "--sample-frames", "4", "--fps", "16", "--frames", "17", "--resolution", "64"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(clips.glob("*.txt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = captions(clips)
    assert 0 < len(partial) < FILES, "the kill should land mid-run"
    assert all(expected[name] == text for name, text in partial.items())  # whole captions only

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert captions(clips) == expected


def test_a_qwen3_vl_checkpoint_captions_through_the_same_path(tmp_path):
    from tiny_qwen_vl import write_tiny_processor, write_tiny_qwen_vl

    folder = write_tiny_qwen_vl(tmp_path / "qwen3_vl", "qwen3_vl")
    write_tiny_processor(folder, "qwen3_vl")
    clips = tmp_path / "clips"
    clips.mkdir()
    write_pattern_video(clips / "clip.mp4", count=30, fps=30, width=96, height=64)
    settings = CaptionSettings(model=str(folder), max_new_tokens=8, sample_frames=4)
    assert [r["status"] for r in caption_files(files_in(clips), settings)] == ["written"]
    assert (clips / "clip.txt").read_text(encoding="utf-8").strip()
