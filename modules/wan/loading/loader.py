"""The one way to build a WanModel: every part from a source, then checks, then loading, all on the CPU.

Each part (transformer, transformer_2, vae, text_encoder) comes from its own setting when the config names one
(a single file, a .pth, a part folder, a diffusers folder or a hub id), else from `base_path/<part>`; a plain
diffusers folder or hub id is the case where every part comes from base_path. The tokenizer and the scheduler
come from base_path (without a scheduler there, the variant's official one). Everything is checked from configs
and headers before any weight is read; anything that goes wrong is a ModelLoadError that names the file or part
and says what to do (docs/model_loading.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer

from modules.base.model_loader import BaseModelLoader, ModelLoadError
from modules.util.device import DTYPES
from modules.util.resources import MODEL_CONFIGS_DIR
from modules.util.stop_point import stop_point
from modules.wan.loading.detection import detect_variant
from modules.wan.loading.expert_slots import check_expert_slots
from modules.wan.loading.file_detection import SingleFileInfo
from modules.wan.loading.hub import resolve_model_path
from modules.wan.loading.identity import source_identity
from modules.wan.loading.part_folder import (
    check_part_folder,
    load_library_part,
    load_part_folder,
    load_scheduler,
    official_scheduler,
)
from modules.wan.loading.part_load import PART_CLASSES, load_folder_streamed, load_part_from_file, stores_blocks_in
from modules.wan.loading.sources import (
    PART_SETTINGS,
    PartSource,
    check_umt5,
    check_vae_fits,
    config_for_file,
    missing_part,
    part_source,
    variant_of_sources,
)
from modules.wan.model import WanModel
from modules.wan.variants import WanVariant, check_expected_variant

log = logging.getLogger("wan_trainer")

# The transformer may also be stored in fp8 (block linears only; computed in the training dtype: fp8_linear.py).
FP8 = "float8_e4m3fn"
TRANSFORMER_DTYPES: dict[str, torch.dtype] = {**DTYPES, FP8: torch.float8_e4m3fn}


def to_dtype(value: str | torch.dtype, what: str, choices: dict[str, torch.dtype] = DTYPES) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value not in choices:
        raise ModelLoadError(
            f"{what}: unknown dtype {value!r}. Expected one of {', '.join(choices)}. Fix: set {what} to one of those."
        )
    return choices[value]


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
    encoders_only: bool = False,
    quantise_linear=None,
    map_weights: bool = False,
) -> WanModel:
    """Load every part of a WAN 2.2 model on the CPU; `load_transformer_2=False` skips the low-noise expert and
    `encoders_only` both experts (caching as its own phase: scripts/cache.py). The text encoder and the VAE are
    checked now and read from their files when first used. `quantise_linear` (int8/nf4 storage: one block linear
    in, its quantised layer out) is applied to each expert's block linears as they are read, so an expert is never
    whole in `transformer_dtype`.

    A part's own path (a single file, a part folder, or a diffusers folder / hub id) replaces that part of
    `model_path` (docs/model_loading.md). `map_weights`: expert weights kept in their file's dtype are views of
    the file's mapping (memory.map_weights, modules/module/mapped_weights.py).
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
    if model_path is not None and Path(str(model_path)).is_file():
        raise ModelLoadError(
            f"{model_path}: model.base_path is a single file. Expected: a diffusers folder or hub id there (it "
            "gives the tokenizer and any part without its own source). Fix: set model.transformer_path (and "
            "model.transformer_2_path, model.vae_path, model.text_encoder_path) to single files instead."
        )
    base = resolve_model_path(model_path, allow_download) if model_path else None
    whole_folder = base is not None and not any(part_paths.values())
    base_variant = None
    if whole_folder or (
        base is not None and (base / "model_index.json").is_file() and (base / "transformer" / "config.json").is_file()
    ):
        # Configs only: a folder whose parts do not fit together is refused before any weight is read.
        base_variant = detect_variant(base, expected_variant if whole_folder else None)
    sources = {
        part: part_source(part, part_paths.get(part), base, lambda p, part: resolve_model_path(p, allow_download, part))
        for part in PART_SETTINGS
    }
    variant = _check_sources(sources, base, base_variant, part_paths, expected_variant, load_transformer_2)
    experts = ["transformer", "transformer_2"] if variant.has_transformer_2 and load_transformer_2 else ["transformer"]
    for part in ("text_encoder", "vae", *experts):  # safetensors present and readable (headers only)
        if not sources[part].is_file:
            check_part_folder(sources[part].path.parent, sources[part].path.name)

    configs_dir = configs_dir or MODEL_CONFIGS_DIR
    tokenizer = load_library_part(
        base,
        "tokenizer",
        lambda: AutoTokenizer.from_pretrained(base / "tokenizer", local_files_only=True, trust_remote_code=False),
    )
    experts = [] if encoders_only else experts
    loaded = {}
    for part in experts:
        stop_point("loading the model")  # a requested stop (Ctrl-C) is taken between parts, never inside one
        log.info("loading %s from %s", part, sources[part].path)  # the load order, as a run's log shows it
        loaded[part] = _load(sources[part], transformer_dtype, base, variant, configs_dir, quantise_linear, map_weights)
    model = WanModel(
        variant=variant,
        tokenizer=tokenizer,
        text_encoder=None,
        vae=None,
        transformer=loaded.get("transformer"),
        transformer_2=loaded.get("transformer_2"),
        scheduler=_scheduler(base, variant, required=whole_folder),
        model_path=base or sources["transformer"].path,
        **_identities(sources, base, variant),
        text_max_length=text_max_length,
    )
    # The encoders are read when first used (a run whose cache is complete never reads them: encoder_parts.py).
    for part, dtype in (("text_encoder", text_encoder_dtype), ("vae", vae_dtype)):
        model.set_encoder_source(
            part, lambda part=part, dtype=dtype: _load(sources[part], dtype, base, variant, configs_dir), dtype
        )
    model.eval()
    # A stop asked for while the tokenizer, configs and headers were read (caching comes next: scripts/cache.py
    # and a run's caching phase load no expert, so this is their loading phase's only safe point).
    stop_point("loading the model")
    return model


def _check_sources(
    sources: dict[str, PartSource | None],
    base: Path | None,
    base_variant: WanVariant | None,
    part_paths: dict,
    expected_variant: str | None,
    load_transformer_2: bool,
) -> WanVariant:
    """The variant the sources hold, after every check that needs no weights; raises what does not fit."""
    if sources["transformer"] is None and sources["transformer_2"] is None:
        raise missing_part("transformer", None, base)
    variant = variant_of_sources(sources, base_variant)
    first = sources["transformer"] or sources["transformer_2"]
    check_expected_variant(variant, expected_variant, str(first.path), "this transformer")
    if not variant.has_transformer_2 and part_paths.get("transformer_2"):
        raise ModelLoadError(
            f"{sources['transformer_2'].path}: {variant.name} has one transformer, but "
            f"{PART_SETTINGS['transformer_2']} is set. Fix: leave {PART_SETTINGS['transformer_2']} empty."
        )
    check_expert_slots(sources, variant, need_both=load_transformer_2)
    both = variant.has_transformer_2 and load_transformer_2
    for part in ("transformer",) + (("transformer_2",) if both else ()) + ("vae", "text_encoder"):
        if sources[part] is None:
            raise missing_part(part, variant, base)
    check_vae_fits(sources["vae"], variant)
    check_umt5(sources["text_encoder"])
    if base is None or not (base / "tokenizer").is_dir():
        raise missing_part("tokenizer", variant, base)
    return variant


def _load(
    src: PartSource,
    dtype: torch.dtype,
    base: Path | None,
    variant: WanVariant,
    configs_dir: Path,
    quantise_linear=None,
    mapped: bool = False,
):
    """One part from its source: a single file through part_load.py; an expert's folder streamed tensor by tensor
    (no 16-bit copy of an fp8/int8/nf4 expert; views of its shards where mapped); other folders through
    from_pretrained."""
    if src.is_file:
        config, config_source = config_for_file(src, base, variant, configs_dir)
        info = (
            src.file if src.part != "transformer_2" else SingleFileInfo(**{**src.file.__dict__, "part": "transformer"})
        )
        return load_part_from_file(
            info, config, dtype, config_source=config_source, replace_linear=quantise_linear, map_weights=mapped
        )
    cls = PART_CLASSES["transformer" if src.part == "transformer_2" else src.part]
    if cls is PART_CLASSES["transformer"]:
        # Every expert folder streams tensor by tensor, mapped or read into the process's own memory as
        # memory.map_weights says: from_pretrained would leave same-dtype weights on safetensors' own mapping
        # whatever that setting (measured: docs/benchmarks.md), and the host plan counts what the setting says.
        shards = check_part_folder(src.path.parent, src.path.name)
        config = json.loads((src.path / "config.json").read_text(encoding="utf-8"))
        mapped = mapped and stores_blocks_in(shards, dtype)
        return load_folder_streamed(src.path, shards, config, dtype, replace_linear=quantise_linear, map_weights=mapped)
    return load_part_folder(src.path.parent, src.path.name, cls, dtype=dtype)


def _scheduler(base: Path, variant: WanVariant, required: bool):
    """base_path's scheduler (a whole diffusers folder must have one), else the variant's official one."""
    if required or (base / "scheduler" / "scheduler_config.json").is_file():
        return load_scheduler(base)
    return official_scheduler(variant)


def _identities(sources: dict[str, PartSource | None], base: Path, variant: WanVariant) -> dict[str, str]:
    """The cache keys (loading/identity.py). The whole model's covers every part, loaded or not, so switching
    experts does not invalidate caches; latents and captions depend only on their encoder, so a fine-tuned
    transformer reuses them."""
    index = base / "model_index.json"
    shared = {"tokenizer": base / "tokenizer", "scheduler": base / "scheduler"}

    def where(*parts: str) -> list[tuple[str, Path]]:
        found = [(p, sources[p].path if p in sources and sources[p] else shared.get(p)) for p in parts]
        return [(p, path) for p, path in found if path is not None and path.exists()]

    return {
        "source_identity": source_identity(
            variant, where("text_encoder", "tokenizer", "vae", "scheduler", "transformer", "transformer_2"), index
        ),
        "vae_identity": source_identity(variant, where("vae"), index),
        "text_encoder_identity": source_identity(variant, where("text_encoder", "tokenizer"), index),
    }


class WanModelLoader(BaseModelLoader):
    """Reads the config's model section and calls load_wan_model."""

    def load(self, config) -> WanModel:
        return self._load_model(config, encoders_only=False)

    def load_for_caching(self, config) -> WanModel:
        """Tokenizer and encoders (read on first use), no expert: what scripts/cache.py needs."""
        return self._load_model(config, encoders_only=True)

    def _load_model(self, config, encoders_only: bool) -> WanModel:
        from modules.config.loading import check_fp8_storage
        from modules.config.memory_config import QUANTISED_DTYPES, MemoryConfig, check_memory
        from modules.wan.loading.base_loras import base_lora_specs, check_base_lora_files, merge_base_loras
        from modules.wan.loading.storage import apply_storage, check_storage_backend, load_dtypes, quantiser_for

        check_fp8_storage(config)  # also for configs built in code, which skip the file loader's checks
        check_memory(config)
        if not encoders_only:
            check_storage_backend(config)
        transformer_dtype, text_encoder_dtype = load_dtypes(config)
        m = config.model
        base_loras = [] if encoders_only else base_lora_specs(m.base_loras)
        fp8_after_merge = bool(base_loras) and transformer_dtype == FP8
        if base_loras:
            check_base_lora_files(base_loras, two_experts=m.variant != "TI2V-5B")
        if fp8_after_merge:  # base LoRAs are merged into 16-bit weights, which are then quantised with them
            transformer_dtype = config.training.train_dtype
        # int8/nf4 quantise each block linear as it is read, unless base LoRAs must be merged into the 16-bit
        # expert first (then apply_storage quantises after the merge).
        quantise_now = quantiser_for(config) if not encoders_only and not base_loras else None
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
            encoders_only=encoders_only,
            quantise_linear=quantise_now,
            # Mapped where the stored bytes are the file's: not when base LoRAs or int8/nf4 rewrite every weight.
            map_weights=(getattr(config, "memory", None) or MemoryConfig()).map_weights
            and not base_loras
            and m.transformer_dtype not in QUANTISED_DTYPES,
        )
        if base_loras:
            merge_base_loras(model, base_loras, fp8_storage=fp8_after_merge)
        apply_storage(model, config, experts_done=quantise_now is not None)
        return model
