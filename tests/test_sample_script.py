"""scripts/sample.py as a user runs it: a base model, a LoRA pair with per-expert weights, a prompts file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.config.sampling_config import SampleConfig
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.loras import LoraSpec
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler
from tests.test_sampler_equality import write_random_lora

REPO = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sample.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def png_frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("frame_*.png"))])


def test_sample_script_with_lora_pair_and_prompts_file(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("T2V-A14B")
    write_random_lora(folder, "transformer", tmp_path / "style_high_noise.safetensors", 1)
    write_random_lora(folder, "transformer_2", tmp_path / "style_low_noise.safetensors", 2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two videos\na red circle moves\n\na green square bounces\n")
    common = [
        "--model",
        str(folder),
        "--width",
        "64",
        "--height",
        "64",
        "--frames",
        "5",
        "--steps",
        "2",
        "--seed",
        "4",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--text-max-length",
        "64",
        "--flow-shift",
        "1.5",
        "--format",
        "png",
    ]
    done = run_script(
        *common,
        "--lora",
        f"{tmp_path / 'style.safetensors'}=0.5,1.5",
        "--prompts-file",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr[-3000:]

    sidecars = sorted((tmp_path / "out").glob("*.json"))
    assert [s.name for s in sidecars] == ["sample-000-seed4.json", "sample-001-seed5.json"]
    records = [json.loads(s.read_text()) for s in sidecars]
    assert [r["prompt"] for r in records] == ["a red circle moves", "a green square bounces"]
    assert records[0]["loras"][0]["weights"] == {"high_noise": 0.5, "low_noise": 1.5}
    assert records[0]["model"]["variant"] == "T2V-A14B" and records[0]["frames"]["actual"] == 5
    written = png_frames(tmp_path / "out" / "sample-000-seed4")
    assert written.shape == (5, 64, 64, 3) and f"video: {tmp_path / 'out' / 'sample-000-seed4'}" in done.stdout

    # The script's video is what the sampler makes in-process with the same settings.
    model = load_wan_model(
        folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=64
    )
    sampler = WanModelSampler(SamplerOptions(format="png"))
    sampler.use_loras(model, [LoraSpec(str(tmp_path / "style.safetensors"), weight=0.5, weight_2=1.5)])
    config = SampleConfig(prompt="a red circle moves", width=64, height=64, frames=5, steps=2, seed=4, flow_shift=1.5)
    assert np.array_equal(png_frames(sampler.sample(model, config, tmp_path / "inprocess")), written)


def test_sample_script_names_a_missing_lora(tiny_model_dir, tmp_path):
    done = run_script(
        "--model",
        str(tiny_model_dir("TI2V-5B")),
        "--prompt",
        "x",
        "--lora",
        str(tmp_path / "nope.safetensors"),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--format",
        "png",
    )
    assert done.returncode == 2 and "nope.safetensors" in done.stderr and "Fix:" in done.stderr
    assert not (tmp_path / "out").exists()
