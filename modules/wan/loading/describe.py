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


def data_facts(config) -> tuple[float, int]:
    """(fps, pixel multiple) of the config's model: its variant's, from model.variant or its folder's configs."""
    from modules.util.errors import ConfigError
    from modules.wan.loading.detection import detect_variant
    from modules.wan.variants import VARIANTS

    if config.model.variant in VARIANTS:
        variant = VARIANTS[config.model.variant]
    elif not config.model.base_path:
        raise ConfigError(
            "model.variant is 'auto' and model.base_path is empty: the trained fps and pixel multiple are unknown. "
            "Fix: set model.variant (TI2V-5B, T2V-A14B or I2V-A14B) in the config."
        )
    else:
        variant = detect_variant(config.model.base_path)
    return variant.fps, variant.pixel_multiple
