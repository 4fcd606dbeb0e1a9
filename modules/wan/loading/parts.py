"""A WanModel assembled from per-part sources: single files, part folders, or the parts of a diffusers folder.

Each part (transformer = high-noise expert, transformer_2 = low-noise expert, vae, text_encoder) comes from its
own source when the config names one, else from the diffusers folder / hub id in model.base_path. The tokenizer
and the scheduler come from model.base_path; without one the scheduler is the variant's official one, and the
tokenizer is a missing part (it cannot be shipped or fetched).

Everything is checked from headers and configs before any weight is read: the variant of each expert, that
both experts are of the same model and in the right slots, that the VAE fits the transformer and that the
text encoder is UMT5.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UniPCMultistepScheduler
from transformers import AutoTokenizer

from modules.base.model_loader import ModelLoadError
from modules.util.resources import MODEL_CONFIGS_DIR as CONFIGS_DIR
from modules.wan.loading.detection import read_json
from modules.wan.loading.expert_slots import EXPERT_SETTINGS, check_expert_slots
from modules.wan.loading.file_detection import SingleFileInfo, detect_single_file
from modules.wan.loading.part_load import PART_CLASSES, load_part_from_file
from modules.wan.loading.weight_file import WeightFile
from modules.wan.model import WanModel
from modules.wan.variants import VARIANTS, WanVariant

PART_SETTINGS = {**EXPERT_SETTINGS, "vae": "model.vae_path", "text_encoder": "model.text_encoder_path"}


@dataclass
class PartSource:
    part: str
    path: Path  # a single file, or a folder holding config.json and weights
    file: SingleFileInfo | None = None

    @property
    def is_file(self) -> bool:
        return self.file is not None


def _source(part: str, given: str | Path | None, base: Path | None, resolve) -> PartSource | None:
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


def _missing(part: str, variant: WanVariant | None, base: Path | None) -> ModelLoadError:
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


def _variant_of(sources: dict[str, PartSource], base_variant: WanVariant | None) -> WanVariant:
    first = sources["transformer"] or sources["transformer_2"]
    variant = first.file.variant if first.is_file else base_variant
    if variant is None:
        in_ch = (read_json(first.path / "config.json") or {}).get("in_channels")
        variant = next((v for v in VARIANTS.values() if v.transformer_in_channels == in_ch), None)
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


def _check_vae(src: PartSource, variant: WanVariant) -> None:
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


def _check_text_encoder(src: PartSource) -> None:
    if src.is_file:
        return  # detection already refused T5, CLIP and LLM encoders
    model_type = (read_json(src.path / "config.json") or {}).get("model_type")
    if model_type != "umt5":
        raise ModelLoadError(
            f"{src.path}: the text encoder is {model_type!r}. Expected: umt5 (UMT5EncoderModel, as in every WAN 2.2 "
            f"repo). "
            f"Fix: set {PART_SETTINGS['text_encoder']} to umt5_xxl_fp16.safetensors or a Wan-AI text_encoder/ folder."
        )


def _config_for(src: PartSource, base: Path | None, variant: WanVariant, configs_dir: Path) -> tuple[dict, str]:
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


def _load(src: PartSource, dtype: torch.dtype, base: Path | None, variant: WanVariant, configs_dir: Path):
    cls = PART_CLASSES["transformer" if src.part == "transformer_2" else src.part]
    if src.is_file:
        config, config_source = _config_for(src, base, variant, configs_dir)
        info = (
            src.file if src.part != "transformer_2" else SingleFileInfo(**{**src.file.__dict__, "part": "transformer"})
        )
        return load_part_from_file(info, config, dtype, config_source=config_source)
    from modules.wan.loading.loader import _load_weights  # the folder path of the diffusers loader, with its checks

    return _load_weights(src.path.parent, src.path.name, cls, dtype=dtype)


def _identity(sources: list[PartSource | Path], variant: WanVariant) -> str:
    """sha256 over the variant and every source file's name, size and mtime (cheap; a re-download changes it)."""
    digest = hashlib.sha256(f"wan-2.2:{variant.name}".encode())
    for src in sources:
        path = src.path if isinstance(src, PartSource) else src
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        for file in files:
            stat = file.stat()
            digest.update(f"\0{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
            if file.suffix == ".json":
                digest.update(file.read_bytes())
    return digest.hexdigest()


def load_wan_model_from_parts(
    base: Path | None,
    part_paths: dict[str, str | Path | None],
    *,
    resolve,
    transformer_dtype: torch.dtype,
    text_encoder_dtype: torch.dtype,
    vae_dtype: torch.dtype,
    text_max_length: int,
    expected_variant: str | None,
    load_transformer_2: bool,
    configs_dir: Path = CONFIGS_DIR,
) -> WanModel:
    base_variant = None
    if base is not None and (base / "model_index.json").is_file() and (base / "transformer" / "config.json").is_file():
        from modules.wan.loading.detection import detect_variant

        base_variant = detect_variant(base)
    sources = {part: _source(part, part_paths.get(part), base, resolve) for part in PART_SETTINGS}
    if sources["transformer"] is None and sources["transformer_2"] is None:
        raise _missing("transformer", None, base)
    variant = _variant_of(sources, base_variant)
    if expected_variant not in (None, "auto") and expected_variant != variant.name:
        raise ModelLoadError(
            f"{(sources['transformer'] or sources['transformer_2']).path}: this is {variant.name}, but model.variant "
            f"asks for {expected_variant}. "
            f"Fix: set model.variant to 'auto' or '{variant.name}', or point the transformer settings to a "
            f"{expected_variant} model."
        )
    if not variant.has_transformer_2 and part_paths.get("transformer_2"):
        raise ModelLoadError(
            f"{sources['transformer_2'].path}: {variant.name} has one transformer, but "
            f"{PART_SETTINGS['transformer_2']} is set. Fix: leave {PART_SETTINGS['transformer_2']} empty."
        )
    check_expert_slots(sources, variant, need_both=load_transformer_2)
    for part in (
        ("transformer",)
        + (("transformer_2",) if variant.has_transformer_2 and load_transformer_2 else ())
        + ("vae", "text_encoder")
    ):
        if sources[part] is None:
            raise _missing(part, variant, base)
    _check_vae(sources["vae"], variant)
    _check_text_encoder(sources["text_encoder"])
    if base is None or not (base / "tokenizer").is_dir():
        raise _missing("tokenizer", variant, base)

    tokenizer = AutoTokenizer.from_pretrained(base / "tokenizer", local_files_only=True, trust_remote_code=False)
    text_encoder = _load(sources["text_encoder"], text_encoder_dtype, base, variant, configs_dir)
    vae = _load(sources["vae"], vae_dtype, base, variant, configs_dir)
    experts = ["transformer", "transformer_2"] if variant.has_transformer_2 and load_transformer_2 else ["transformer"]
    loaded = {part: _load(sources[part], transformer_dtype, base, variant, configs_dir) for part in experts}
    if (base / "scheduler" / "scheduler_config.json").is_file():
        from modules.wan.loading.loader import _load_scheduler

        scheduler = _load_scheduler(base)
    else:  # the Wan-AI repos' scheduler: UniPC in flow-matching mode with the variant's shift
        scheduler = UniPCMultistepScheduler(
            num_train_timesteps=1000,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=variant.sample_flow_shift,
            solver_order=2,
        )
    every = [s for s in sources.values() if s is not None]
    model = WanModel(
        variant=variant,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=loaded["transformer"],
        transformer_2=loaded.get("transformer_2"),
        scheduler=scheduler,
        model_path=base or sources["transformer"].path,
        source_identity=_identity([*every, base / "tokenizer"], variant),
        vae_identity=_identity([sources["vae"]], variant),
        text_encoder_identity=_identity([sources["text_encoder"], base / "tokenizer"], variant),
        text_max_length=text_max_length,
    )
    model.eval()
    return model


def check_file_fits(path: str | Path, config: dict) -> SingleFileInfo:
    """Detect a file and check its names and shapes against a config, reading the header only (no data)."""
    with WeightFile(path, "model") as file:
        info = detect_single_file(path, file=file)
    from modules.wan.loading.part_load import check_names_and_shapes

    check_names_and_shapes(info, config, str(path))
    return info
