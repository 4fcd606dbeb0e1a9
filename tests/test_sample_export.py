"""Samples as files: MP4/WebM/PNG decode back as requested, the sidecar agrees with the file, the static check,
continuity chains (checked against diffusers' I2V pipeline) and the missing-encoder error (a real missing binary)."""

from __future__ import annotations

import json
import logging
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline, WanPipeline
from PIL import Image

from modules.config.sampling_config import SampleConfig
from modules.util.sample_export import export_sample
from modules.util.video_checks import check_motion
from modules.util.video_export import VideoExportError, find_ffmpeg
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler

TEXT_LEN = 64


@pytest.fixture(scope="module")
def ti2v(tiny_model_dir):
    folder = tiny_model_dir("TI2V-5B")
    return folder, load_wan_model(
        folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_LEN
    )


def decode(path: Path) -> tuple[np.ndarray, Fraction, str, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.average_rate, stream.codec_context.name, stream.codec_context.pix_fmt


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("frame_*.png"))])


def moving_square(frames: int = 9, height: int = 48, width: int = 64) -> np.ndarray:
    video = np.full((frames, height, width, 3), 40, dtype=np.uint8)
    for i in range(frames):
        video[i, 10:26, 4 + 4 * i : 20 + 4 * i] = (230, 60, 30)
    return video


def test_mp4_sample_decodes_as_requested_and_sidecar_agrees(ti2v, tmp_path):
    _, model = ti2v
    # 70 px is rounded down to TI2V-5B's multiple of 32 (64); 6 frames up to 4n+1 (9).
    config = SampleConfig(
        prompt="a green square",
        negative_prompt="blurry",
        width=70,
        height=64,
        frames=6,
        seed=3,
        steps=2,
        guidance_scale=4.0,
        flow_shift=3.0,
        fps=12,
    )
    sampler = WanModelSampler(SamplerOptions(format="mp4", quality=20))
    path = sampler.sample(model, config, tmp_path / "samples" / "s.mp4", extra={"step": 7})
    frames, rate, codec, pix_fmt = decode(path)
    assert frames.shape == (9, 64, 64, 3) and rate == 12 and codec == "h264" and pix_fmt == "yuv420p"

    sidecar = json.loads((tmp_path / "samples" / "s.json").read_text())
    version_line = subprocess.run([find_ffmpeg(), "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert sidecar["file"] == "s.mp4" and sidecar["step"] == 7
    assert (sidecar["prompt"], sidecar["negative_prompt"], sidecar["seed"]) == ("a green square", "blurry", 3)
    assert sidecar["model"]["variant"] == "TI2V-5B" and sidecar["model"]["path"] == str(model.model_path)
    assert sidecar["loras"] == [] and sidecar["embeddings"] == []
    assert sidecar["sampling"] == {
        "steps": 2,
        "scheduler": "unipc",
        "guidance_scale": 4.0,
        "guidance_scale_2": None,
        "flow_shift": 3.0,
        "boundary_ratio": None,
    }
    assert (
        sidecar["frames"]["requested"] == 6
        and sidecar["frames"]["actual"] == len(frames)
        and "4n+1" in sidecar["frames"]["rule"]
    )
    assert sidecar["size"] == {"requested": [70, 64], "actual": [64, 64], "rule": sidecar["size"]["rule"]}
    output = sidecar["output"]
    assert (output["frames"], output["width"], output["height"], output["fps"]) == (len(frames), 64, 64, float(rate))
    assert output["duration_seconds"] == pytest.approx(len(frames) / float(rate))
    assert output["format"] == "mp4" and output["quality_crf"] == 20 and output["pixel_format"] == pix_fmt
    assert output["encoder"] == f"{version_line} (libx264)"
    assert sidecar["static_check"]["frozen"] is not None and sidecar["static_check"]["threshold"] == 1.0


@pytest.mark.parametrize("fmt", ["webm", "png"])
def test_webm_and_png_round_trip_with_sidecar(tmp_path, fmt):
    video = moving_square()
    exported = export_sample(video, tmp_path / "v", fps=8, format=fmt, static_threshold=1.0, record={"prompt": "p"})
    if fmt == "webm":
        decoded, rate, codec, _ = decode(exported.path)
        assert exported.path.name == "v.webm" and codec == "vp9" and rate == 8
        assert np.abs(decoded.astype(int) - video.astype(int)).mean() < 8  # lossy, the picture is there
    else:
        decoded = png_frames(exported.path)
        assert np.array_equal(decoded, video)  # lossless
    assert decoded.shape == video.shape
    sidecar = json.loads(exported.sidecar.read_text())
    assert exported.sidecar == tmp_path / "v.json" and sidecar["prompt"] == "p"
    assert sidecar["output"]["frames"] == 9 and sidecar["output"]["format"] == fmt
    assert sidecar["output"]["quality_crf"] == (30 if fmt == "webm" else None)


def test_static_check_flags_a_frozen_video_and_passes_a_moving_one(tmp_path, caplog):
    moving = moving_square()
    rng = np.random.default_rng(0)
    # A still picture with sensor-like noise of +-1 level: the mean difference stays well below 1.
    frozen = np.clip(
        moving[:1].astype(int) + rng.integers(-1, 2, size=moving.shape) * (rng.random(moving.shape) < 0.3), 0, 255
    ).astype(np.uint8)
    for video, expected in ((moving, False), (frozen, True)):
        # The formula, computed independently over the whole video at once.
        formula = np.abs(np.diff(video.astype(np.float64), axis=0)).mean()
        check = check_motion(video, threshold=1.0)
        assert check.mean_frame_difference == pytest.approx(formula) and check.frozen is expected
    with caplog.at_level(logging.WARNING, logger="wan_trainer.samples"):
        exported = export_sample(frozen, tmp_path / "still", fps=8, format="png", static_threshold=1.0, record={})
    assert json.loads(exported.sidecar.read_text())["static_check"]["frozen"] is True
    assert "looks frozen" in caplog.text and "still" in caplog.text
    # The threshold is a setting: at 0 nothing is frozen.
    assert check_motion(frozen, threshold=0.0).frozen is False
    assert check_motion(moving[:1]).frozen is None  # one frame: nothing to compare


def test_chain_clip_two_starts_from_clip_ones_last_frame(ti2v, tmp_path):
    folder, model = ti2v
    config = SampleConfig(
        prompt="a red circle moves",
        next_prompts=["the circle stops"],
        width=64,
        height=64,
        frames=5,
        seed=9,
        steps=2,
        guidance_scale=3.0,
        flow_shift=3.0,
        clips=2,
        fps=8,
    )
    sampler = WanModelSampler(SamplerOptions(format="png"))
    joined_path = sampler.sample(model, config, tmp_path / "chain")
    clips = sampler.last_result.clips
    clip1, clip2 = png_frames(clips[0].path), png_frames(clips[1].path)
    last = np.asarray(Image.open(clips[0].last_frame).convert("RGB"))
    assert np.array_equal(last, clip1[-1])

    # Clip 2 is exactly what diffusers' I2V pipeline makes from that last frame (seed + 1, the second prompt).
    parts = WanPipeline.from_pretrained(folder, dtype=torch.float32)
    modules = {k: v for k, v in parts.components.items() if k not in ("image_processor", "image_encoder")}
    pipe = WanImageToVideoPipeline(image_processor=None, image_encoder=None, **modules, expand_timesteps=True)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=3.0)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        image=Image.open(clips[0].last_frame).convert("RGB"),
        prompt="the circle stops",
        width=64,
        height=64,
        num_frames=5,
        num_inference_steps=2,
        guidance_scale=3.0,
        max_sequence_length=TEXT_LEN,
        generator=torch.Generator("cpu").manual_seed(10),
        output_type="np",
    ).frames[0]
    reference = (np.clip(reference, 0, 1) * 255).round().astype(np.uint8)
    assert np.abs(clip2.astype(int) - reference.astype(int)).max() <= 1

    # The joined video: clip 1, then clip 2 without its first frame.
    joined = png_frames(joined_path)
    assert np.array_equal(joined, np.concatenate([clip1, clip2[1:]]))
    sidecar = json.loads(sampler.last_result.sidecar.read_text())
    assert sidecar["chain"]["seeds"] == [9, 10] and sidecar["prompts"] == ["a red circle moves", "the circle stops"]
    clip2_sidecar = json.loads(clips[1].sidecar.read_text())
    assert clip2_sidecar["chain"]["start"].endswith(clips[0].last_frame.name)
    assert clip2_sidecar["pipeline"] == "WanImageToVideoPipeline" and clip2_sidecar["seed"] == 10


def test_no_encoder_is_a_clear_error_before_sampling(ti2v, tmp_path, monkeypatch):
    _, model = ti2v
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    # A real missing binary: imageio-ffmpeg pointed at a file that does not exist, and no ffmpeg on PATH.
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    monkeypatch.setenv("PATH", str(empty_bin))
    sampler = WanModelSampler(SamplerOptions(format="mp4"))
    with pytest.raises(VideoExportError, match="pip install imageio-ffmpeg") as error:
        sampler.preflight()
    assert "no-such-ffmpeg" in str(error.value) and "IMAGEIO_FFMPEG_EXE" in str(error.value)
    calls = []
    model.transformer.register_forward_hook(lambda *_: calls.append(1))
    with pytest.raises(VideoExportError):
        sampler.sample(
            model, SampleConfig(prompt="a square", width=64, height=64, frames=5, steps=2), tmp_path / "out" / "s.mp4"
        )
    assert calls == [] and not (tmp_path / "out").exists()  # failed before any denoising step, nothing written
    # PNG needs no encoder and still works.
    exported = export_sample(
        moving_square(3), tmp_path / "frames", fps=8, format="png", static_threshold=1.0, record={}
    )
    assert len(list(exported.path.glob("*.png"))) == 3
