"""`model.base_loras`: LoRA files merged into the expert weights once, right after loading and before any fp8, int8
or nf4 storage conversion, so training (and every sample during it) starts from base + sum of multiplier x update.

Files are resolved per expert as the sampler resolves them (formats/lora_pairs.py), checked against the model from
their headers before any tensor is read (another model's LoRA is refused as elsewhere), read in any type and layout
(formats/adapter_file.py) and merged by modules/module/lora_merge.py. What was merged (files, SHA-256, multipliers)
becomes the model's `base_weights_identity`: the trained file's metadata records it and a backup written on another
merged base refuses to resume.
"""

from __future__ import annotations

import json
import logging

from modules.base.model_loader import ModelLoadError
from modules.module.fp8_linear import convert_to_fp8_storage
from modules.module.lora_merge import merge_adapter
from modules.util.file_hash import file_sha256
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.lora_compatibility import check_lora_fits, linear_shapes, read_lora_info
from modules.wan.formats.lora_pairs import LoraSpec, resolve_lora_files
from modules.wan.model import WanModel

log = logging.getLogger("wan_trainer")


def base_lora_specs(entries) -> list[LoraSpec]:
    """Config entries (`model.base_loras`) as the sampler's LoRA specs."""
    return [LoraSpec(path=e.path, weight=e.multiplier, weight_2=e.multiplier_2, expert=e.expert) for e in entries]


def check_base_lora_files(specs: list[LoraSpec], two_experts: bool) -> None:
    """Before loading: every entry names readable safetensors files (header only), so a typo costs no load."""
    for index, spec in enumerate(specs):
        try:
            for path in resolve_lora_files(spec, two_experts).values():
                read_lora_info(path)
        except ValueError as error:
            raise ModelLoadError(f"model.base_loras[{index}]: {error}") from None


def merge_base_loras(model: WanModel, specs: list[LoraSpec], fp8_storage: bool = False) -> list[dict]:
    """Merge each LoRA into the loaded 16/32-bit experts in order, then (`fp8_storage`) store their block linears in
    fp8; returns what was merged (also the model's base_weights_identity)."""
    records = []
    for index, spec in enumerate(specs):
        try:
            files = resolve_lora_files(spec, model.variant.has_transformer_2)
            for expert_name, path in files.items():
                expert = getattr(model, expert_name)
                if expert is None:  # an expert this run does not load (experts.train)
                    continue
                check_lora_fits(path, model.variant.name, linear_shapes(expert), override=None)
                settings, state_dict, _ = read_adapter_file(path)
                multiplier = spec.weight_for(expert_name)
                merged = merge_adapter(expert, state_dict, settings.type, settings.rank, settings.alpha, multiplier)
                records.append(
                    {
                        "path": str(path),
                        "sha256": file_sha256(path),
                        "expert": expert_name,
                        "multiplier": multiplier,
                        "type": "dora" if settings.use_dora else settings.type,
                    }
                )
                log.info(
                    "model.base_loras[%d]: merged %s (%s, %d layers) into %s x %g",
                    index,
                    path,
                    records[-1]["type"],
                    len(merged),
                    expert_name,
                    multiplier,
                )
        except ValueError as error:
            raise ModelLoadError(f"model.base_loras[{index}]: {error}") from None
    model.base_weights_identity = json.dumps(records, sort_keys=True) if records else ""
    if fp8_storage:
        for expert in model.experts():
            convert_to_fp8_storage(expert)
    return records
