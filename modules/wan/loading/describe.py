"""One line saying what a model path holds, for the GUI's Model tab: "TI2V-5B transformer, bf16, original names",
or the loader's own error message. Reads headers and configs only (the same detection as loading)."""

from __future__ import annotations

from pathlib import Path

from modules.base.model_loader import ModelLoadError
from modules.wan.loading.detection import describe_model_folder, detect_variant, summarize
from modules.wan.loading.file_detection import detect_single_file


def describe_source(path: str) -> str:
    try:
        if Path(path).is_dir():
            return f"{detect_variant(path).name} diffusers folder: {summarize(describe_model_folder(path))}"
        if Path(path).is_file():
            return detect_single_file(path).describe()
        return f"{path}: nothing at this path (a hub id is checked when training starts)"
    except ModelLoadError as error:
        return str(error)
