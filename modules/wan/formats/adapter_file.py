"""Any adapter file this trainer reads (LoRA, DoRA, LoHa, LoKr) as (settings, peft state dict, metadata).

One reader for the sampler, `lora.continue_from` and scripts/convert_model.py, so all three rebuild an adapter
from the same settings: those recorded in the file (formats/adapter_settings.py), else inferred from it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modules.wan.formats.adapter_settings import AdapterSettings, adapter_settings
from modules.wan.formats.lora_file import load_lora_file
from modules.wan.formats.lycoris_keys import from_comfyui_variant_state_dict, read_tensors, variant_of_keys


def read_adapter_file(path: str | Path) -> tuple[AdapterSettings, dict[str, torch.Tensor], dict[str, str]]:
    """(settings to attach with, float32 state dict under peft's names, the file's metadata)."""
    tensors, metadata = read_tensors(path)
    if variant_of_keys(tensors) is None:
        state_dict, metadata = load_lora_file(path)  # also fills in rank / alpha read from the weights
        return adapter_settings(tensors, metadata, str(path)), state_dict, metadata
    settings = adapter_settings(tensors, metadata, str(path))
    _, state_dict = from_comfyui_variant_state_dict(tensors, settings.rank, settings.alpha)
    return settings, state_dict, metadata
