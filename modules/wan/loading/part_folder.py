"""One part of a model stored as a diffusers part folder (config.json + *.safetensors), and the scheduler folder.

Every part is loaded with its own class's from_pretrained, straight into the requested dtype, from local
safetensors files only: no network, no pickle, no remote code. Library errors become ModelLoadError naming the
folder and its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import UniPCMultistepScheduler

from modules.base.model_loader import ModelLoadError
from modules.module.fp8_linear import convert_to_fp8_storage
from modules.wan.formats.headers import read_header
from modules.wan.loading.detection import read_json
from modules.wan.loading.hub import PICKLE_SUFFIXES
from modules.wan.variants import WanVariant

# Schedulers the WAN repos ship or that diffusers documents for WAN; anything else may not speak flow matching.
SCHEDULERS = ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler")


def check_part_folder(path: Path, subfolder: str, config_name: str = "config.json") -> list[Path]:
    """The safetensors files of one part; refuses missing parts and pickle-only parts with a clear message."""
    folder = path / subfolder
    if not (folder / config_name).is_file():
        raise ModelLoadError(
            f"{folder}: the {subfolder} part has no {config_name}. Found: "
            f"{'an empty or partial folder' if folder.is_dir() else 'no such folder'}. Expected: "
            f"{subfolder}/{config_name} "
            f"and its weights. Fix: re-download the {subfolder}/ folder of this model."
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        found = (
            f"only pickle weights ({', '.join(pickles)}), which are never loaded (they can run code)"
            if pickles
            else "no weight files"
        )
        raise ModelLoadError(
            f"{folder}: the {subfolder} part has no .safetensors weights. Found: {found}. Expected: *.safetensors. "
            "Fix: download the safetensors version of this model (the Wan-AI diffusers repos have it)."
        )
    for file in weights:
        check_safetensors(file, subfolder)
    return weights


def check_safetensors(file: Path, part: str) -> None:
    """Read only the header: a truncated or non-safetensors file is named here, before the library fails vaguely."""
    read_header(file, f"{part}/{file.name}")  # raises ModelLoadError naming the file, its size and the fix


def load_library_part(path: Path, subfolder: str, load) -> Any:
    """Run one from_pretrained; library errors (truncated file, wrong shapes, bad config) become ModelLoadError."""
    try:
        return load()
    except ModelLoadError:
        raise
    except Exception as error:
        files = ", ".join(f"{p} ({p.stat().st_size} bytes)" for p in sorted((path / subfolder).glob("*.safetensors")))
        raise ModelLoadError(
            f"{path / subfolder}: loading the {subfolder} part failed. Found: {type(error).__name__}: {error} "
            f"(files: {files or 'none'}). Expected: a complete {subfolder} checkpoint matching its config.json. "
            f"Fix: re-download the {subfolder}/ folder (a truncated or partly copied .safetensors file causes this)."
        ) from error


def load_part_folder(path: Path, subfolder: str, cls: type, **kwargs: Any) -> Any:
    """from_pretrained of one weight part, refusing checkpoints that leave weights uninitialised.

    The libraries only log missing weights (and leave them random or on the meta device); for a base
    model that is always a broken or mismatched checkpoint, so it is an error here.
    """
    if kwargs.get("dtype") == torch.float8_e4m3fn:  # fp8 storage: load as bf16, then quantise layer by layer
        model = load_part_folder(path, subfolder, cls, **{**kwargs, "dtype": torch.bfloat16})
        convert_to_fp8_storage(model)
        return model
    common = dict(subfolder=subfolder, local_files_only=True, use_safetensors=True, output_loading_info=True)
    model, info = load_library_part(path, subfolder, lambda: cls.from_pretrained(path, **common, **kwargs))
    missing = sorted(info.get("missing_keys") or [])
    if missing or info.get("mismatched_keys") or info.get("error_msgs"):
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{path / subfolder}: the {subfolder} weights do not match its config.json. Found: "
            f"{len(missing)} weights missing from the checkpoint ({shown or 'none'}), mismatched "
            f"{list(info.get('mismatched_keys') or [])[:3]}, errors {list(info.get('error_msgs') or [])[:3]}. "
            f"Expected: every weight of {cls.__name__} in the .safetensors files. "
            f"Fix: take config.json and the weights of {subfolder}/ from the same download."
        )
    return model


def official_scheduler(variant: WanVariant) -> UniPCMultistepScheduler:
    """The scheduler the Wan-AI diffusers repos ship: UniPC in flow-matching mode with the variant's shift."""
    return UniPCMultistepScheduler(
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=variant.sample_flow_shift,
        solver_order=2,
    )


def load_scheduler(path: Path) -> Any:
    config = read_json(path / "scheduler" / "scheduler_config.json")
    if config is None:
        raise ModelLoadError(
            f"{path / 'scheduler'}: scheduler_config.json is missing. Expected: one of {', '.join(SCHEDULERS)}. "
            "Fix: re-download the scheduler/ folder of this model."
        )
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise ModelLoadError(
            f"{path / 'scheduler' / 'scheduler_config.json'}: unsupported scheduler {name!r}. Expected one of "
            f"{', '.join(SCHEDULERS)} (flow-matching schedulers the WAN pipelines use). "
            "Fix: restore the scheduler/ folder of the Wan-AI diffusers repo."
        )
    cls = getattr(diffusers, name)
    return load_library_part(
        path, "scheduler", lambda: cls.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    )
