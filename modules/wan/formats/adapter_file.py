"""Any adapter file this trainer reads (LoRA, DoRA, LoHa, LoKr in the ComfyUI, kohya or diffusers layout) as one
record: peft-named tensors plus the rank, alpha and type to attach or merge them with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from modules.wan.formats.lora_file import ALPHA_KEY, DORA_SUFFIX, RANK_KEY, load_lora_file
from modules.wan.formats.lycoris_keys import (
    file_rank_and_alpha,
    from_comfyui_variant_state_dict,
    is_variant_file,
    read_tensors,
)


@dataclass(frozen=True)
class AdapterFile:
    kind: str  # lora, loha or lokr
    rank: int
    alpha: float
    state_dict: dict[str, torch.Tensor]  # peft names (`blocks.0.attn1.to_q.lora_A.weight`), float32
    metadata: dict[str, str]

    @property
    def use_dora(self) -> bool:
        return any(key.endswith(DORA_SUFFIX) for key in self.state_dict)

    @property
    def modules(self) -> list[str]:
        """The diffusers module names the adapter targets."""
        return sorted({key.removesuffix(".weight").rsplit(".", 1)[0] for key in self.state_dict})


def read_adapter_file(path: str | Path) -> AdapterFile:
    """Read a LoRA file of any supported type and layout; LoraFileError / VariantFileError name the file."""
    if is_variant_file(path):  # LoHa / LoKr (formats/lycoris_keys.py)
        tensors, metadata = read_tensors(path)
        rank, alpha = file_rank_and_alpha(tensors, metadata)
        kind, state_dict = from_comfyui_variant_state_dict(tensors, rank, alpha)
        return AdapterFile(kind, rank, alpha, state_dict, metadata)
    state_dict, metadata = load_lora_file(path)
    return AdapterFile("lora", int(metadata[RANK_KEY]), float(metadata[ALPHA_KEY]), state_dict, metadata)
