"""Where each part of a WanModel comes from, and the checks made on those sources before any weight is read.

A part (transformer = high-noise expert, transformer_2 = low-noise expert, vae, text_encoder) comes from its own
setting when the config names one (a single file, a part folder, or a whole diffusers folder / hub id), else
from `base_path/<part>`. A diffusers folder is simply the case where every part comes from base_path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.base.model_loader import ModelLoadError
from modules.wan.loading.detection import read_json
from modules.wan.loading.expert_slots import EXPERT_SETTINGS
from modules.wan.loading.file_detection import SingleFileInfo, detect_single_file
from modules.wan.variants import WanVariant, variant_for_in_channels

PART_SETTINGS = {**EXPERT_SETTINGS, "vae": "model.vae_path", "text_encoder": "model.text_encoder_path"}


@dataclass
class PartSource:
    part: str
    path: Path  # a single file, or a folder holding config.json and weights
    file: SingleFileInfo | None = None

    @property
    def is_file(self) -> bool:
        return self.file is not None


def part_source(part: str, given: str | Path | None, base: Path | None, resolve) -> PartSource | None:
    """The part's own setting (file, part folder, or a whole diffusers folder / hub id), else base/<part>."""
    if given:
        path = resolve(given, part)
        if path.is_file():
            info = detect_single_file(path, part.replace("_2", ""))
            if info.part != part.replace("_2", ""):
                settings = [s for p, s in PART_SETTINGS.items() if p.replace("_2", "") == info.part]
                raise ModelLoadError(
                    f"{path}: wrong part: this file is {info.describe()}, but it is set as {PART_SETTINGS[part]}. "
                    f"Expected: the {part} there. Fix: set it as {' or '.join(settings)} and give "
                    f"{PART_SETTINGS[part]} its own file."
                )
            return PartSource(part, path, info)
        if (path / "model_index.json").is_file():
            path = path / part
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path}: {PART_SETTINGS[part]} names no usable {part}. Found: "
                f"{'a folder without config.json' if path.is_dir() else 'nothing at this path'}. "
                f"Expected: a single file, a {part} folder with config.json, or a diffusers folder. Fix: correct "
                f"{PART_SETTINGS[part]}."
            )
        return PartSource(part, path)
    if base is not None and (base / part / "config.json").is_file():
        return PartSource(part, base / part)
    return None


def missing_part(part: str, variant: WanVariant | None, base: Path | None) -> ModelLoadError:
    which = {
        "transformer": "the transformer (high-noise expert for A14B)",
        "transformer_2": "the low-noise expert (transformer_2)",
        "vae": "the VAE",
        "text_encoder": "the UMT5 text encoder",
        "tokenizer": "the UMT5 tokenizer",
    }[part]
    where = f"{base} has no {part}/ folder" if base else "model.base_path is empty"
    setting = PART_SETTINGS.get(part, "model.base_path")
    needed = f" ({variant.name} needs it)" if variant else ""
    return ModelLoadError(
        f"missing part: {which}{needed}. Found: {where} and {setting} is not set. Expected: a source for every part. "
        f"Fix: set {setting} to its file or folder, or set model.base_path to a diffusers folder or hub id that has "
        f"{part}/."
    )


def variant_of_sources(sources: dict[str, PartSource], base_variant: WanVariant | None) -> WanVariant:
    first = sources["transformer"] or sources["transformer_2"]
    variant = first.file.variant if first.is_file else base_variant
    if variant is None:
        in_ch = (read_json(first.path / "config.json") or {}).get("in_channels")
        variant = variant_for_in_channels(in_ch)
        if variant is None:
            raise ModelLoadError(
                f"{first.path}: transformer in_channels {in_ch} fits no WAN 2.2 model. Fix: use a WAN 2.2 transformer."
            )
    for part in ("transformer", "transformer_2"):
        src = sources.get(part)
        if src is None or not src.is_file:
            continue
        if src.file.variant is not variant:
            raise ModelLoadError(
                f"{src.path}: mismatched experts: this is a {src.file.variant.name} transformer but the other expert "
                f"is "
                f"{variant.name}. Expected: both experts of the same model. Fix: set {PART_SETTINGS['transformer']} "
                f"and "
                f"{PART_SETTINGS['transformer_2']} to the high- and low-noise files of one model."
            )
    return variant


def check_vae_fits(src: PartSource, variant: WanVariant) -> None:
    z_dim = src.file.z_dim if src.is_file else (read_json(src.path / "config.json") or {}).get("z_dim")
    if z_dim != variant.latent_channels:
        kind = {16: "the Wan2.1 VAE (wan_2.1_vae)", 48: "the Wan2.2 VAE (wan2.2_vae)"}
        raise ModelLoadError(
            f"{src.path}: this VAE does not fit the {variant.name} transformer. Found: "
            f"{kind.get(z_dim, f'a VAE with z_dim {z_dim}')}. "
            f"Expected: {kind[variant.latent_channels]} for {variant.name}. Fix: set {PART_SETTINGS['vae']} to "
            + (
                "wan2.2_vae.safetensors / Wan2.2_VAE.pth"
                if variant.latent_channels == 48
                else "wan_2.1_vae.safetensors / Wan2.1_VAE.pth"
            )
            + "."
        )


def check_umt5(src: PartSource) -> None:
    """The text encoder must be UMT5: WAN's captions are encoded by it, and a T5 would silently differ."""
    if src.is_file:
        return  # file detection already refused T5, CLIP and LLM encoders
    model_type = (read_json(src.path / "config.json") or {}).get("model_type")
    if model_type != "umt5":
        raise ModelLoadError(
            f"{src.path}: the text encoder is {model_type!r}. Expected: umt5 (UMT5EncoderModel, as in every WAN 2.2 "
            f"repo). "
            f"Fix: set {PART_SETTINGS['text_encoder']} to umt5_xxl_fp16.safetensors or a Wan-AI text_encoder/ folder."
        )


def config_for_file(src: PartSource, base: Path | None, variant: WanVariant, configs_dir: Path) -> tuple[dict, str]:
    """A single file's config: the same part of model.base_path if present, else the shipped real-model config."""
    if base is not None and (base / src.part / "config.json").is_file():
        path = base / src.part / "config.json"
    else:
        name = {
            "transformer": f"transformer_{variant.name}.json",
            "transformer_2": f"transformer_{variant.name}.json",
            "vae": f"vae_wan{'2.2' if src.file.z_dim == 48 else '2.1'}.json",
            "text_encoder": "text_encoder_umt5-xxl.json",
        }[src.part]
        path = configs_dir / name
    config = read_json(path)
    if config is None:
        raise ModelLoadError(
            f"{path}: the config for {src.path.name} is missing. Fix: restore resources/model_configs/."
        )
    return config, str(path)
