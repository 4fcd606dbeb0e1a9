"""Loads a WAN 2.2 diffusers folder (or a hub id from the local cache) into a WanModel.

Every part is loaded with its own class's from_pretrained, straight into the requested dtype, from local
safetensors files only: no network unless the caller allows a download, no pickle, no remote code.
Anything that goes wrong becomes a ModelLoadError that names the file or part and says what to do.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import AutoTokenizer, UMT5EncoderModel

from modules.base.model_loader import BaseModelLoader, ModelLoadError
from modules.module.fp8_linear import convert_to_fp8_storage
from modules.wan.loading.detection import detect_variant, read_json
from modules.wan.loading.headers import read_header
from modules.wan.model import WanModel
from modules.wan.variants import WanVariant

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# The transformer may also be stored in fp8 (block linears only; computed in the training dtype: fp8_linear.py).
TRANSFORMER_DTYPES: dict[str, torch.dtype] = {**DTYPES, "float8_e4m3fn": torch.float8_e4m3fn}
# Schedulers the WAN repos ship or that diffusers documents for WAN; anything else may not speak flow matching.
SCHEDULERS = ("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler", "DPMSolverMultistepScheduler")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# "org/name": what a hub id looks like; a path that exists locally always wins over this.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# "org/name/sub/dir/file.safetensors": one file of a hub repo (the single files users hold live in such repos).
_HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/((?:[\w.-]+/)*[\w.-]+\.(?:safetensors|sft|pth))$")
# Small JSON files are hashed by content in source_identity; larger files only by size and mtime.
_HASHED_JSON_MAX_BYTES = 1 << 20


def to_dtype(value: str | torch.dtype, what: str, choices: dict[str, torch.dtype] = DTYPES) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value not in choices:
        raise ModelLoadError(
            f"{what}: unknown dtype {value!r}. Expected one of {', '.join(choices)}. Fix: set {what} to one of those."
        )
    return choices[value]


def resolve_model_path(model_path: str | Path, allow_download: bool = False, part: str | None = None) -> Path:
    """A local path as is; a hub id via the local HF cache (a download only when allowed and not HF_HUB_OFFLINE).

    `org/name` is a repo (for a part source, only model_index.json and that part's folder are fetched);
    `org/name/path/file.safetensors` (or .sft / .pth) is one file of a repo, e.g. of Comfy-Org's repackaged WAN repo.
    """
    path = Path(model_path).expanduser()
    text = str(model_path)
    file_match = _HUB_FILE.match(text)
    if path.exists() or not (_HUB_ID.match(text) or file_match):
        return path  # a missing local path is reported by detection, with its message
    from huggingface_hub import hf_hub_download, snapshot_download

    cache_dir = _hub_cache_dir()
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    local_only = offline or not allow_download
    try:
        if file_match:
            return Path(
                hf_hub_download(
                    file_match.group(1), file_match.group(2), cache_dir=cache_dir, local_files_only=local_only
                )
            )
        # Weights as safetensors only: never fetch pickle files we would refuse to load anyway.
        only = ["model_index.json", f"{part}/*"] if part else None
        return Path(
            snapshot_download(
                text,
                cache_dir=cache_dir,
                local_files_only=local_only,
                allow_patterns=only,
                ignore_patterns=[f"*{s}" for s in _PICKLE_SUFFIXES],
            )
        )
    except Exception as error:  # huggingface_hub raises several types (not cached, offline, unknown repo, HTTP)
        cached = f"no local {'file' if file_match else 'folder'} of that name and no copy in the local Hugging Face cache ({cache_dir})"
        if allow_download and offline:
            found, fix = (
                cached + "; downloads are allowed but HF_HUB_OFFLINE is set",
                "unset HF_HUB_OFFLINE or download it first",
            )
        elif allow_download:
            found = f"the download failed ({type(error).__name__}: {error})"
            fix = "check the id, your network and HF token, or download it yourself (huggingface-cli download)"
        else:
            found = cached
            fix = (
                f"download it first (huggingface-cli download {' '.join(file_match.groups()) if file_match else text}) "
                "or set model.allow_download (allow_download=True) to let the trainer download it"
            )
        raise ModelLoadError(
            f"{text}: cannot resolve this hub id. Found: {found}. Expected: a local diffusers folder, a local file or a "
            f"cached hub snapshot. Fix: {fix}."
        ) from error


def _hub_cache_dir() -> Path:
    """The HF hub cache as the environment says now (huggingface_hub reads it only once, at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def _part_files(path: Path, subfolder: str, config_name: str = "config.json") -> list[Path]:
    """The safetensors files of one part; refuses missing parts and pickle-only parts with a clear message."""
    folder = path / subfolder
    if not (folder / config_name).is_file():
        raise ModelLoadError(
            f"{folder}: the {subfolder} part has no {config_name}. Found: "
            f"{'an empty or partial folder' if folder.is_dir() else 'no such folder'}. Expected: {subfolder}/{config_name} "
            f"and its weights. Fix: re-download the {subfolder}/ folder of this model."
        )
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
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
        _check_safetensors(file, subfolder)
    return weights


def _check_safetensors(file: Path, part: str) -> None:
    """Read only the header: a truncated or non-safetensors file is named here, before the library fails vaguely."""
    read_header(file, f"{part}/{file.name}")  # raises ModelLoadError naming the file, its size and the fix


def _load_part(path: Path, subfolder: str, load) -> Any:
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


def _load_weights(path: Path, subfolder: str, cls: type, **kwargs: Any) -> Any:
    """from_pretrained of one weight part, refusing checkpoints that leave weights uninitialised.

    The libraries only log missing weights (and leave them random or on the meta device); for a base
    model that is always a broken or mismatched checkpoint, so it is an error here.
    """
    if kwargs.get("dtype") == torch.float8_e4m3fn:  # fp8 storage: load as bf16, then quantise layer by layer
        model = _load_weights(path, subfolder, cls, **{**kwargs, "dtype": torch.bfloat16})
        convert_to_fp8_storage(model)
        return model
    common = dict(subfolder=subfolder, local_files_only=True, use_safetensors=True, output_loading_info=True)
    model, info = _load_part(path, subfolder, lambda: cls.from_pretrained(path, **common, **kwargs))
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


def source_identity(model_path: Path, variant: WanVariant, parts: list[str]) -> str:
    """sha256 over the variant and each part's configs (by content) and weights (by name, size, mtime).

    Cheap by design: stat calls instead of hashing gigabytes; a re-download or edit changes it.
    """
    digest = hashlib.sha256(f"wan-2.2:{variant.name}".encode())
    for name in ["model_index.json"] + [
        f"{part}/{f.name}" for part in parts for f in sorted((model_path / part).iterdir()) if f.is_file()
    ]:
        file = model_path / name
        stat = file.stat()
        digest.update(f"\0{name}\0{stat.st_size}".encode())
        if file.suffix == ".json" and stat.st_size <= _HASHED_JSON_MAX_BYTES:
            digest.update(file.read_bytes())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()


def _load_scheduler(path: Path) -> Any:
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
    return _load_part(
        path, "scheduler", lambda: cls.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    )


def load_wan_model(
    model_path: str | Path | None,
    *,
    transformer_dtype: torch.dtype = torch.bfloat16,
    text_encoder_dtype: torch.dtype = torch.bfloat16,
    vae_dtype: torch.dtype = torch.float32,
    text_max_length: int = 512,
    allow_download: bool = False,
    expected_variant: str | None = None,
    load_transformer_2: bool = True,
    transformer_path: str | Path | None = None,
    transformer_2_path: str | Path | None = None,
    vae_path: str | Path | None = None,
    text_encoder_path: str | Path | None = None,
    configs_dir: Path | None = None,
) -> WanModel:
    """Load every part of a WAN 2.2 model on the CPU; `load_transformer_2=False` skips the low-noise expert.

    A part's own path (a single file, a part folder, or a diffusers folder / hub id) replaces that part of
    `model_path`; then single_file_model.py assembles the model (docs/model_loading.md).
    """
    if not 1 <= text_max_length <= 512:
        raise ModelLoadError(
            f"text_max_length {text_max_length}: expected 1..512 (UMT5 in WAN uses 512). Fix: set it in that range."
        )
    part_paths = {
        "transformer": transformer_path,
        "transformer_2": transformer_2_path,
        "vae": vae_path,
        "text_encoder": text_encoder_path,
    }
    if any(part_paths.values()) or model_path is None or Path(str(model_path)).is_file():
        from modules.wan.loading.parts import CONFIGS_DIR, load_wan_model_from_parts

        if model_path is not None and Path(str(model_path)).is_file():
            raise ModelLoadError(
                f"{model_path}: model.base_path is a single file. Expected: a diffusers folder or hub id there (it gives the "
                "tokenizer and any part without its own source). Fix: set model.transformer_path (and "
                "model.transformer_2_path, model.vae_path, model.text_encoder_path) to single files instead."
            )
        base = resolve_model_path(model_path, allow_download) if model_path else None
        return load_wan_model_from_parts(
            base,
            part_paths,
            resolve=lambda p, part: resolve_model_path(p, allow_download, part),
            transformer_dtype=transformer_dtype,
            text_encoder_dtype=text_encoder_dtype,
            vae_dtype=vae_dtype,
            text_max_length=text_max_length,
            expected_variant=expected_variant,
            load_transformer_2=load_transformer_2,
            configs_dir=configs_dir or CONFIGS_DIR,
        )
    path = resolve_model_path(model_path, allow_download)
    variant = detect_variant(path, expected_variant)  # configs only: refuses bad folders before any weight is read

    # The text encoder must be UMT5 (WAN's captions are encoded by it; a T5 would silently differ).
    text_config = read_json(path / "text_encoder" / "config.json") or {}
    if text_config and text_config.get("model_type") != "umt5":
        raise ModelLoadError(
            f"{path / 'text_encoder'}: the text encoder is {text_config.get('model_type')!r}. Expected: umt5 "
            "(UMT5EncoderModel, as in every WAN 2.2 repo). Fix: copy text_encoder/ and tokenizer/ from a Wan-AI diffusers repo."
        )
    experts = ["transformer", "transformer_2"] if variant.has_transformer_2 else ["transformer"]
    loaded_experts = experts if load_transformer_2 else experts[:1]
    for part in ["text_encoder", "vae", *loaded_experts]:
        _part_files(path, part)
    if not (path / "tokenizer").is_dir():
        raise ModelLoadError(
            f"{path / 'tokenizer'}: the tokenizer folder is missing. Expected: the UMT5 tokenizer files. "
            "Fix: copy tokenizer/ from a Wan-AI diffusers repo."
        )

    # `dtype` (torch_dtype's new name in diffusers 0.42 and transformers 5) makes the libraries build each
    # model on the meta device and load the weights directly in that dtype: a bf16 load never holds an fp32 copy.
    tokenizer = _load_part(
        path,
        "tokenizer",
        lambda: AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True, trust_remote_code=False),
    )
    text_encoder = _load_weights(path, "text_encoder", UMT5EncoderModel, dtype=text_encoder_dtype)
    vae = _load_weights(path, "vae", AutoencoderKLWan, dtype=vae_dtype)
    experts_ = {
        part: _load_weights(path, part, WanTransformer3DModel, dtype=transformer_dtype) for part in loaded_experts
    }
    scheduler = _load_scheduler(path)

    model = WanModel(
        variant=variant,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=experts_["transformer"],
        transformer_2=experts_.get("transformer_2"),
        scheduler=scheduler,
        model_path=path,
        # Every part of the folder, loaded or not, so switching experts does not invalidate caches.
        source_identity=source_identity(path, variant, ["text_encoder", "tokenizer", "vae", "scheduler", *experts]),
        # Caches depend only on their encoder: a fine-tuned transformer reuses cached latents and captions.
        vae_identity=source_identity(path, variant, ["vae"]),
        text_encoder_identity=source_identity(path, variant, ["text_encoder", "tokenizer"]),
        text_max_length=text_max_length,
    )
    model.eval()
    return model


class WanModelLoader(BaseModelLoader):
    """Reads the config's model section and calls load_wan_model."""

    def load(self, config) -> WanModel:
        from modules.config.loading import check_fp8_storage
        from modules.config.memory_config import check_memory
        from modules.wan.loading.storage import apply_storage, check_storage_backend, load_dtypes

        check_fp8_storage(config)  # also for configs built in code, which skip the file loader's checks
        check_memory(config)
        check_storage_backend(config)
        transformer_dtype, text_encoder_dtype = load_dtypes(config)
        m = config.model
        parts = {
            name: getattr(m, f"{name}_path", "") or None
            for name in ("transformer", "transformer_2", "vae", "text_encoder")
        }
        if not m.base_path and not any(parts.values()):
            raise ModelLoadError(
                "model.base_path is empty. Expected: a WAN 2.2 diffusers folder or a hub id such as "
                "Wan-AI/Wan2.2-TI2V-5B-Diffusers. Fix: set model.base_path."
            )
        model = load_wan_model(
            m.base_path or None,
            **{f"{name}_path": value for name, value in parts.items()},
            transformer_dtype=to_dtype(transformer_dtype, "model.transformer_dtype", TRANSFORMER_DTYPES),
            text_encoder_dtype=to_dtype(text_encoder_dtype, "model.text_encoder_dtype"),
            vae_dtype=to_dtype(m.vae_dtype, "model.vae_dtype"),
            text_max_length=m.text_max_length,
            allow_download=m.allow_download,
            expected_variant=None if m.variant in (None, "", "auto") else m.variant,
        )
        apply_storage(model, config)
        return model
