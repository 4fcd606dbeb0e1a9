"""The smoke run of a real preset: every setting kept except the model (the tiny model of its variant), the clip
size and the step count, so each preset's combination of dtype, fp8 storage, optimizer, offloading,
checkpointing, experts and sampling runs end to end on whatever device is present.

Settings that cannot run on this device are replaced and named with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

SMOKE_SIZE = 64  # pixels, a multiple of every variant's 16/32 px rule
SMOKE_FRAMES = 9
SMOKE_SAMPLE_STEPS = 2
PART_PATHS = ("transformer_path", "transformer_2_path", "vae_path", "text_encoder_path")


@dataclass
class SmokeResult:
    preset: str
    status: str = "ok"  # ok, failed
    seconds: float = 0.0
    replaced: list[str] = field(default_factory=list)  # "setting: what ran instead (why)"
    outputs: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    error: str = ""


def shrink_preset(data: dict, tiny_model: Path, demo_data: Path, start_image: Path, workspace: Path) -> dict:
    """The preset with the tiny model, a tiny clip, 2 steps and its samples scaled down; all else as written."""
    data = copy.deepcopy(data)
    model = data.setdefault("model", {})
    model["base_path"] = str(tiny_model)
    model["allow_download"] = False
    for key in PART_PATHS:
        model.pop(key, None)
    data_section = data.setdefault("data", {})
    data_section["concepts"] = [{"path": str(demo_data)}]
    data_section.pop("concepts_file", None)
    data_section.update(resolution=SMOKE_SIZE, frames=SMOKE_FRAMES, min_frames=1)
    training = data.setdefault("training", {})
    training.update(max_steps=2, warmup_steps=min(training.get("warmup_steps", 0), 1))
    data.setdefault("output", {}).update(workspace_dir=str(workspace), save_every_steps=0)
    data["output"].pop("output_path", None)
    sampling = data.setdefault("sampling", {})
    for sample in sampling.get("samples", []):
        sample.update(width=SMOKE_SIZE, height=SMOKE_SIZE, frames=SMOKE_FRAMES, steps=SMOKE_SAMPLE_STEPS)
        if sample.get("start_image"):
            sample["start_image"] = str(start_image)
    sampling["validation_concept"] = ""
    return data


def adapt_to_device(data: dict, device: torch.device) -> list[str]:
    """Replace what cannot run on `device`, in place; one line per replacement with its reason."""
    replaced = []
    training = data.get("training", {})
    if training.get("optimizer") == "adamw_8bit" and not _bitsandbytes_optimizer_runs(device):
        training["optimizer"] = "adamw"
        replaced.append(
            f"training.optimizer adamw_8bit -> adamw (bitsandbytes' 8-bit AdamW does not run on {device.type} here)"
        )
    memory = data.get("memory", {})
    if memory.get("blocks_to_swap", 0) > 1:  # the tiny models have 2 blocks: swap one, so swapping still runs
        replaced.append(f"memory.blocks_to_swap {memory['blocks_to_swap']} -> 1 (the tiny model has 2 blocks)")
        memory["blocks_to_swap"] = 1
    return replaced


def ensure_one_sample(data: dict, variant_image_conditioning: str, start_image: Path) -> list[str]:
    """A preset that samples nothing during training still gets one sample at the end of the smoke run."""
    sampling = data.setdefault("sampling", {})
    if sampling.get("samples"):
        return []
    sample = {
        "prompt": "a red circle moves from left to right over a blue gradient",
        "width": SMOKE_SIZE,
        "height": SMOKE_SIZE,
        "frames": SMOKE_FRAMES,
        "steps": SMOKE_SAMPLE_STEPS,
        "seed": 1,
    }
    if variant_image_conditioning == "channel_concat":
        sample["start_image"] = str(start_image)
    sampling["samples"] = [sample]
    sampling["sample_at_end"] = True
    return ["sampling.samples: none in the preset; the smoke run samples once at the end"]


def _bitsandbytes_optimizer_runs(device: torch.device) -> bool:
    try:
        import bitsandbytes as bnb

        parameter = torch.nn.Parameter(torch.zeros(4096, device=device))
        optimizer = bnb.optim.AdamW8bit([parameter], lr=1e-3)
        parameter.grad = torch.ones_like(parameter)
        optimizer.step()
        return bool(torch.isfinite(parameter).all())
    except Exception:  # noqa: BLE001 - any failure means: not usable on this device
        return False


def run_smoke(preset_path: Path, config_data: dict, replaced: list[str]) -> SmokeResult:
    from modules.config.loading import config_from_dict
    from modules.trainer.generic_trainer import GenericTrainer

    result = SmokeResult(preset=preset_path.name, replaced=replaced)
    start = time.perf_counter()
    try:
        trained = GenericTrainer(config_from_dict(config_data)).train()
        result.outputs = [str(p) for p in trained.output_files]
        result.samples = [str(p) for p in trained.sample_files]
        if trained.steps != 2 or not result.outputs:
            result.status, result.error = "failed", f"ran {trained.steps} steps, wrote {len(result.outputs)} files"
        elif not result.samples:
            result.status, result.error = "failed", "no sample was written"
    except Exception as error:  # noqa: BLE001 - the report names every failure; the next preset still runs
        result.status, result.error = "failed", f"{type(error).__name__}: {error}"
    result.seconds = time.perf_counter() - start
    return result
