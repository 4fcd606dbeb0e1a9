"""Hub ids as model sources: `org/name` (a repo) or `org/name/path/file.safetensors` (one file of a repo).

Resolved through the local Hugging Face cache; a download only when the caller allows it and HF_HUB_OFFLINE is
not set. Weights are fetched as safetensors only (pickle files are never loaded, so never fetched).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from modules.base.model_loader import ModelLoadError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# "org/name": what a hub id looks like; a path that exists locally always wins over this.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# "org/name/sub/dir/file.safetensors": one file of a hub repo (the single files users hold live in such repos).
_HUB_FILE = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/((?:[\w.-]+/)*[\w.-]+\.(?:safetensors|sft|pth))$")


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
                ignore_patterns=[f"*{s}" for s in PICKLE_SUFFIXES],
            )
        )
    except Exception as error:  # huggingface_hub raises several types (not cached, offline, unknown repo, HTTP)
        cached = (
            f"no local {'file' if file_match else 'folder'} of that name and no copy in the local Hugging Face "
            f"cache ({cache_dir})"
        )
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
            f"{text}: cannot resolve this hub id. Found: {found}. Expected: a local diffusers folder, a local file or "
            f"a "
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
