"""The sampler (base model + LoRA files with per-expert weights) equals diffusers' own pipelines.

Reference: a diffusers user's path, written independently of our code: `from_pretrained` on the same tiny
folder, `load_lora_weights` (with `load_into_transformer_2` for the low-noise expert), `set_adapters` for the
weights, the scheduler built from diffusers' classes, a CPU generator with the same seed. Ours: load_wan_model,
WanModelSampler.use_loras, WanModelSampler.sample (PNG, lossless, so the written pixels are compared).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from PIL import Image

from modules.config.sampling_config import SampleConfig
from modules.module.lora import attach_lora, lora_state_dict, set_lora_state_dict
from modules.wan.formats.lora_file import save_lora_file
from modules.wan.loading.loader import load_wan_model
from modules.wan.sampling.loras import LoraSpec
from modules.wan.sampling.sampler import SamplerOptions, WanModelSampler

TEXT_LEN = 64
# The 4n+1 rule by formula: 7 requested -> the nearest 4n+1 at or above = 9 (diffusers itself would round to 5).
REQUESTED_FRAMES = 7
ACTUAL_FRAMES = 4 * -(-(REQUESTED_FRAMES - 1) // 4) + 1
# Same modules, same float32 ops and seed; only the LoRA layers were built by different code (ours vs.
# diffusers' loader), so the pipelines' float frames agree to ~1e-6. After uint8 rounding a value that
# lands on a .5 boundary may round either way: at most 1 level apart, and nearly all pixels equal.
MAX_LEVEL_DIFFERENCE = 1
MIN_EQUAL_SHARE = 0.99


def write_random_lora(folder: Path, subfolder: str, path: Path, seed: int) -> Path:
    """A random rank-4 LoRA for one expert of the tiny model, saved in ComfyUI layout by our saver."""
    expert = WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder)
    attach_lora(expert, rank=4, alpha=4.0)
    generator = torch.Generator().manual_seed(seed)
    set_lora_state_dict(
        expert, {k: torch.randn(v.shape, generator=generator) * 0.3 for k, v in lora_state_dict(expert).items()}
    )
    return save_lora_file(lora_state_dict(expert), path, rank=4, alpha=4.0)


def start_image(path: Path, size: int = 64) -> Path:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.full((size, size), 90.0)], -1)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def reference_scheduler(name: str, shift: float):
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_order=2,
    )


def reference_video(folder, loras, config: SampleConfig, image_path: Path | None) -> np.ndarray:
    index = json.loads((Path(folder) / "model_index.json").read_text())
    if index["_class_name"] == "WanImageToVideoPipeline":  # I2V-A14B
        pipe = WanImageToVideoPipeline.from_pretrained(folder, dtype=torch.float32)
    else:
        pipe = WanPipeline.from_pretrained(folder, dtype=torch.float32)
    if image_path is not None and isinstance(pipe, WanPipeline):
        # TI2V-5B image-to-video: diffusers' documented way, the I2V pipeline over the same parts.
        modules = {k: v for k, v in pipe.components.items() if k not in ("image_processor", "image_encoder")}
        pipe = WanImageToVideoPipeline(
            image_processor=None, image_encoder=None, **modules, expand_timesteps=pipe.config.expand_timesteps
        )
    for adapter, (files, weights) in loras.items():
        pipe.load_lora_weights(str(files["high"]), adapter_name=adapter)
        if "low" in files:
            pipe.load_lora_weights(str(files["low"]), adapter_name=adapter, load_into_transformer_2=True)
    if loras:
        pipe.transformer.set_adapters(list(loras), [w["high"] for _, w in loras.values()])
        if pipe.transformer_2 is not None:
            pipe.transformer_2.set_adapters(list(loras), [w["low"] for _, w in loras.values()])
    pipe.scheduler = reference_scheduler(config.scheduler, config.flow_shift)
    pipe.set_progress_bar_config(disable=True)
    arguments = dict(
        prompt=config.prompt,
        negative_prompt=config.negative_prompt,
        width=config.width,
        height=config.height,
        num_frames=ACTUAL_FRAMES,
        num_inference_steps=config.steps,
        guidance_scale=config.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(config.seed),
        output_type="np",
        max_sequence_length=TEXT_LEN,
    )
    if pipe.transformer_2 is not None:
        arguments["guidance_scale_2"] = config.guidance_scale_2
    if image_path is not None:
        arguments["image"] = Image.open(image_path).convert("RGB")
    frames = pipe(**arguments).frames[0]
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def written_frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("frame_*.png"))])


def expert_calls(model) -> dict[str, int]:
    calls = {}
    for name, expert in (("transformer", model.transformer), ("transformer_2", model.transformer_2)):
        if expert is not None:
            calls[name] = 0
            expert.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


CASES = [
    # variant, scheduler, image-to-video; shift 1.5 with 4 steps puts steps on both sides of the boundary.
    ("T2V-A14B", "unipc", False),
    ("I2V-A14B", "euler", True),
    ("TI2V-5B", "euler", False),
    ("TI2V-5B", "unipc", True),
]


@pytest.mark.parametrize(("variant", "scheduler", "image_to_video"), CASES)
def test_sampler_equals_diffusers(tiny_model_dir, tmp_path, variant, scheduler, image_to_video):
    folder = tiny_model_dir(variant)
    two_experts = variant != "TI2V-5B"
    files = {
        "high": write_random_lora(
            folder,
            "transformer",
            tmp_path / ("style_high_noise.safetensors" if two_experts else "style.safetensors"),
            1,
        )
    }
    if two_experts:
        files["low"] = write_random_lora(folder, "transformer_2", tmp_path / "style_low_noise.safetensors", 2)
    weights = {"high": 0.7, "low": 1.3} if two_experts else {"high": 0.8}
    image = start_image(tmp_path / "start.png") if image_to_video else None
    config = SampleConfig(
        prompt="a red circle moves from left to right",
        negative_prompt="still image",
        width=64,
        height=64,
        frames=REQUESTED_FRAMES,
        seed=5,
        steps=4,
        guidance_scale=4.0,
        guidance_scale_2=2.5 if two_experts else None,
        flow_shift=1.5,
        scheduler=scheduler,
        start_image=str(image) if image else "",
    )

    model = load_wan_model(
        folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, text_max_length=TEXT_LEN
    )
    sampler = WanModelSampler(SamplerOptions(format="png"))
    # The stem of an A14B pair finds both files; the second weight is the low-noise expert's.
    sampler.use_loras(
        model, [LoraSpec(path=str(tmp_path / "style.safetensors"), weight=weights["high"], weight_2=weights.get("low"))]
    )
    calls = expert_calls(model)
    path = sampler.sample(model, config, tmp_path / "samples" / "ours")
    ours = written_frames(path)

    expected = reference_video(folder, {"style": (files, weights)}, config, image)
    assert ours.shape == expected.shape == (ACTUAL_FRAMES, 64, 64, 3)
    difference = np.abs(ours.astype(int) - expected.astype(int))
    assert difference.max() <= MAX_LEVEL_DIFFERENCE and (difference == 0).mean() >= MIN_EQUAL_SHARE
    if two_experts:
        assert calls["transformer"] > 0 and calls["transformer_2"] > 0  # both experts, as at inference

    sidecar = json.loads(sampler.last_result.sidecar.read_text())
    assert sidecar["pipeline"] == ("WanImageToVideoPipeline" if image_to_video else "WanPipeline")
    assert sidecar["sampling"]["scheduler"] == scheduler
    assert sidecar["loras"][0]["weights"] == (
        {"high_noise": 0.7, "low_noise": 1.3} if two_experts else {"high_noise": 0.8}
    )
    assert sidecar["frames"]["requested"] == REQUESTED_FRAMES and sidecar["frames"]["actual"] == ACTUAL_FRAMES
