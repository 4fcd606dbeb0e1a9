"""Each WAN 2.2 variant trains end to end from its demo preset, run as the README says (scripts/train.py):
cache, train, save, sample. Tiny real-class models, the synthetic demo clips, 32 px and 9 frames for speed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from modules.wan.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
PRESETS = {
    "TI2V-5B": "demo_ti2v_5b_lora.json",
    "T2V-A14B": "demo_t2v_a14b_lora.json",
    "I2V-A14B": "demo_i2v_a14b_lora.json",
}
STEPS, SIZE, FRAMES = 4, 32, 9
CACHE_LINE = re.compile(r"cache: (\d+) training windows; (\d+) latents and (\d+) captions encoded now")
PIPELINES = {"TI2V-5B": "WanPipeline", "T2V-A14B": "WanPipeline", "I2V-A14B": "WanImageToVideoPipeline"}


def overrides(variant: str, model: Path, data: Path, workspace: Path) -> list[str]:
    values = [
        f"model.base_path={model}",
        f"data.concepts.0.path={data}",
        f"output.workspace_dir={workspace}",
        f"data.resolution={SIZE}",
        f"data.frames={FRAMES}",
        f"training.max_steps={STEPS}",
        "training.warmup_steps=0",
        "output.save_every_steps=0",
        f"sampling.samples.0.width={SIZE}",
        f"sampling.samples.0.height={SIZE}",
        f"sampling.samples.0.frames={FRAMES}",
        "sampling.samples.0.steps=2",
    ]
    if variant == "I2V-A14B":
        # The preset's start image lies in the demo data folder; here that folder is the test's.
        values.append(f"sampling.samples.0.start_image={data / 'still_circle.png'}")
    if VARIANTS[variant].has_transformer_2:
        # Even odds per step, so both experts surely train within a few steps (seeded: the same every run).
        values.append("experts.high_noise_step_ratio=0.5")
    else:
        values.append("training.image_to_video_ratio=0.5")  # both TI2V-5B modes in one run
    return values


@pytest.fixture(scope="module", params=list(PRESETS))
def run(request, tiny_model_dir, demo_data_dir, tmp_path_factory):
    variant = request.param
    workspace = tmp_path_factory.mktemp(f"e2e_{variant}")
    command = [sys.executable, "scripts/train.py", "--config-path", f"training_presets/{PRESETS[variant]}"]
    for value in overrides(variant, tiny_model_dir(variant), demo_data_dir, workspace):
        command += ["--config-value", value]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return variant, workspace, output


def test_cache_holds_latents_and_conditioning_of_the_variant(run):
    variant, workspace, output = run
    spec = VARIANTS[variant]
    windows, latents_encoded, captions_encoded = map(int, CACHE_LINE.search(output).groups())
    assert windows > 0 and latents_encoded == windows and captions_encoded > 0
    latent_files = sorted((workspace / "cache" / "latents").rglob("*.safetensors"))
    assert len(latent_files) == windows
    assert len(list((workspace / "cache" / "text").rglob("*.safetensors"))) == captions_encoded
    for path in latent_files:
        entry = load_file(path)
        latents = entry["latents"]
        assert latents.shape[0] == spec.latent_channels and torch.isfinite(latents).all()
        if spec.image_conditioning == "channel_concat":
            # I2V-A14B: the pipeline's image condition (first frame, then black frames), cached beside the
            # latents on the same grid. The VAE is causal in time, so its first latent frame is the clip's.
            condition = entry["image_condition"]
            assert condition.shape == latents.shape
            torch.testing.assert_close(condition[:, :1], latents[:, :1], atol=1e-4, rtol=1e-4)
            if latents.shape[1] > 1:  # a still image is its own condition; a clip's later frames are not black
                assert not torch.allclose(condition[:, 1:], latents[:, 1:], atol=1e-2)
        else:
            assert set(entry) == {"latents"}


def test_losses_are_finite_for_every_step(run):
    _, workspace, _ = run
    losses = [e.value for e in EventAccumulator(str(workspace / "tensorboard")).Reload().Scalars("loss/train")]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)


def test_lora_files_name_their_expert_and_hold_trained_weights(run):
    variant, workspace, output = run
    output_dir = workspace / "output"
    expected = (
        ["lora_high_noise.safetensors", "lora_low_noise.safetensors"]
        if VARIANTS[variant].has_transformer_2
        else ["lora.safetensors"]
    )
    assert sorted(p.name for p in output_dir.iterdir()) == expected
    for name in expected:
        assert f"model:  {output_dir / name}" in output
        with safe_open(str(output_dir / name), framework="pt") as file:
            metadata = file.metadata()
            tensors = {k: file.get_tensor(k) for k in file.keys()}
        assert metadata["modelspec.architecture"] and metadata["wan.expert"] == (
            name.removeprefix("lora_").removesuffix(".safetensors") if len(expected) == 2 else "single"
        )
        assert tensors and all(k.startswith("diffusion_model.blocks.") for k in tensors)
        assert all(torch.isfinite(v).all() for v in tensors.values())
        # lora_B starts at zero: a non-zero B means this expert really took optimizer steps.
        assert any(v.abs().sum() > 0 for k, v in tensors.items() if k.endswith("lora_B.weight")), name


def test_sample_is_a_decodable_mp4_from_the_variants_pipeline(run):
    variant, workspace, output = run
    sample = next((workspace / "samples").glob("*.mp4"))
    assert f"sample: {sample}" in output
    with av.open(str(sample)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    sidecar = json.loads(sample.with_suffix(".json").read_text())
    assert sidecar["model"]["variant"] == variant
    assert sidecar["pipeline"] == PIPELINES[variant]
    assert bool(sidecar["start_image"]) == (variant == "I2V-A14B")
