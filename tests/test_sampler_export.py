"""The sampler against diffusers' own WanPipeline (independent reference) and the video writer against PyAV."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from diffusers import WanPipeline

from modules.config.train_config import SampleConfig
from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.util.video_export import VideoExportError, find_ffmpeg, write_video
from modules.wan.formats.lora_file import save_lora_file
from modules.wan.model import WanModel
from modules.wan.sampling.sampler import WanModelSampler, generate_float_frames, generate_frames, round_frames
from modules.wan.variants import VARIANTS

RANK, ALPHA = 4, 4.0
# Same modules, same ops, same seed: only the LoRA path differs (peft layers built by us vs. by diffusers'
# loader from the ComfyUI file, where alpha/rank is folded into A and B), so float frames agree to ~1e-6.
FLOAT_ATOL = 1e-4


def model_with_lora(folder: Path, variant: str, tmp_path: Path) -> tuple[WanModel, dict[str, Path]]:
    """A WanModel from the tiny folder, a random LoRA on every expert, and each expert's LoRA file."""
    pipe = WanPipeline.from_pretrained(folder)
    model = WanModel(
        variant=VARIANTS[variant],
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=pipe.transformer,
        transformer_2=pipe.transformer_2,
        scheduler=pipe.scheduler,
        model_path=folder,
        text_max_length=64,
    )
    files = {}
    generator = torch.Generator().manual_seed(3)
    for name in ("transformer", "transformer_2"):
        expert = getattr(model, name)
        if expert is None:
            continue
        attach_lora(expert, rank=RANK, alpha=ALPHA, dropout=0.5)  # dropout: must be off while sampling
        set_lora_state_dict(
            expert, {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in lora_state_dict(expert).items()}
        )
        expert.train()  # as during training; the sampler must switch to eval and back
        files[name] = save_lora_file(
            lora_state_dict(expert), tmp_path / f"{name}.safetensors", rank=RANK, alpha=ALPHA, metadata={}
        )
    return model, files


def reference_frames(folder: Path, files: dict[str, Path], config: SampleConfig, flow_shift: float, text_len: int):
    pipe = WanPipeline.from_pretrained(folder)
    pipe.load_lora_weights(str(files["transformer"]))
    if "transformer_2" in files:
        pipe.load_lora_weights(str(files["transformer_2"]), load_into_transformer_2=True)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=flow_shift)
    pipe.set_progress_bar_config(disable=True)
    calls = count_calls(pipe)
    out = pipe(
        prompt=config.prompt,
        negative_prompt=config.negative_prompt,
        width=config.width,
        height=config.height,
        num_frames=round_frames(config.frames),
        num_inference_steps=config.steps,
        guidance_scale=config.guidance_scale,
        guidance_scale_2=config.guidance_scale_2 if pipe.transformer_2 is not None else None,
        generator=torch.Generator("cpu").manual_seed(config.seed),
        output_type="np",
        max_sequence_length=text_len,
    ).frames[0]
    return out, calls


def count_calls(holder) -> dict[str, int]:
    """Forward calls per expert (observed with hooks, nothing replaced)."""
    calls = {"transformer": 0, "transformer_2": 0}
    for name in calls:
        module = getattr(holder, name)
        if module is not None:
            module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


@pytest.mark.parametrize(
    ("variant", "flow_shift", "guidance_2"),
    [("TI2V-5B", 5.0, None), ("T2V-A14B", 1.0, 2.0)],  # shift 1 with 3 steps puts steps on both sides of 0.875
)
def test_sampler_matches_diffusers_pipeline(tiny_model_dir, tmp_path, variant, flow_shift, guidance_2):
    folder = tiny_model_dir(variant)
    model, files = model_with_lora(folder, variant, tmp_path)
    config = SampleConfig(
        prompt="a red circle moves",
        negative_prompt="blurry",
        width=64,
        height=64,
        frames=5,
        seed=11,
        steps=3,
        guidance_scale=4.0,
        guidance_scale_2=guidance_2,
        flow_shift=flow_shift,
    )
    calls = count_calls(model)
    ours = generate_float_frames(model, config)
    expected, reference_calls = reference_frames(folder, files, config, flow_shift, model.text_max_length)

    assert ours.shape == expected.shape == (5, 64, 64, 3)
    np.testing.assert_allclose(ours, expected, atol=FLOAT_ATOL, rtol=0)
    assert calls == reference_calls
    if variant == "T2V-A14B":
        assert calls["transformer"] > 0 and calls["transformer_2"] > 0  # both experts sampled, as in inference
    # Train mode restored after sampling; the uint8 frames are the rounded float frames.
    assert all(expert.training for expert in model.experts())
    uint8 = generate_frames(model, config)
    assert uint8.dtype == np.uint8
    assert np.abs(uint8.astype(int) - (expected * 255).round().astype(int)).max() <= 1


def test_sample_writes_mp4_with_rounded_frames(tiny_model_dir, tmp_path):
    model, _ = model_with_lora(tiny_model_dir("TI2V-5B"), "TI2V-5B", tmp_path)
    config = SampleConfig(prompt="a green square", width=64, height=64, frames=6, seed=0, steps=2, fps=12)
    sampler = WanModelSampler()
    path = sampler.sample(model, config, tmp_path / "samples" / "s.mp4")
    assert sampler.last_result.frames == 9  # 6 rounded up to the next 4n+1
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 12
    assert len(frames) == 9 and frames[0].shape == (64, 64, 3)
    # The video and its JSON sidecar, nothing else (no temporary files left behind).
    assert sorted(os.listdir(path.parent)) == ["s.json", "s.mp4"]


def moving_square(frames: int = 9, height: int = 48, width: int = 64) -> np.ndarray:
    video = np.full((frames, height, width, 3), 40, dtype=np.uint8)
    for i in range(frames):
        video[i, 10:26, 4 + 4 * i : 20 + 4 * i] = (230, 60, 30)
    return video


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("webm", "vp9")])
def test_video_decodes_back(tmp_path, fmt, codec):
    video = moving_square()
    path = write_video(torch.from_numpy(video), tmp_path / f"v.{fmt}", 16, format=fmt)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert stream.codec_context.name == codec and stream.average_rate == 16
    assert decoded.shape == video.shape
    assert np.abs(decoded.astype(int) - video.astype(int)).mean() < 8  # lossy, but the picture is there


def test_png_folder(tmp_path):
    video = moving_square(frames=3)
    folder = write_video(video, tmp_path / "frames", 8, format="png")
    write_video(video[::-1].copy(), folder, 8, format="png")  # replaces the old folder
    names = sorted(os.listdir(folder))
    assert names == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    with av.open(str(folder / names[0])) as container:
        assert np.array_equal(next(container.decode(video=0)).to_ndarray(format="rgb24"), video[2])
    assert sorted(os.listdir(tmp_path)) == ["frames"]


def test_missing_encoder_says_how_to_fix(tmp_path, monkeypatch):
    assert Path(find_ffmpeg()).is_file()
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(VideoExportError, match="pip install imageio-ffmpeg"):
        find_ffmpeg()
    with pytest.raises(VideoExportError, match="no-such-ffmpeg"):
        write_video(moving_square(), tmp_path / "v.mp4", 16)
    assert os.listdir(tmp_path) == []


def test_bad_frames_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_video(np.zeros((2, 16, 16, 3), dtype=np.float32), tmp_path / "v.mp4", 16)
    with pytest.raises(ValueError, match="shape"):
        write_video(np.zeros((16, 16, 3), dtype=np.uint8), tmp_path / "v.mp4", 16)
