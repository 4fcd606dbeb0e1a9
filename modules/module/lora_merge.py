"""Merging a LoRA file's adapter into a model's base weights (for training on top of a LoRA, `model.base_loras`).

Each formula is the update the adapter applies at inference, so a model with the LoRA merged computes what the
model with the LoRA attached computes (up to the base dtype's rounding, done once per weight). Tensors are peft's
(`lora_A`/`lora_B`, `hada_*`, `lokr_*`, plus this project's column-form `dora_scale`), scaled by alpha / rank as
peft scales them (formats/lycoris_keys.py converts ComfyUI's LoKr scaling to peft's on reading):
  LoRA:  W + m * (alpha / r) * B @ A
  LoHa:  W + m * (alpha / r) * (w1_a @ w1_b) * (w2_a @ w2_b)
  LoKr:  W + m * (alpha / r) * kron(w1, w2), each factor whole or w_a @ w_b
  DoRA:  W + m * (W' - W),  W' = (W + (alpha / r) * B @ A) * dora_scale / column_norm(W + (alpha / r) * B @ A)
with m the multiplier; DoRA's multiplier blends towards the decomposed weight, as ComfyUI applies its strength.
"""

from __future__ import annotations

import torch
from torch import nn

from modules.module.dora import DORA_SCALE, column_norm


def _factor(parts: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return parts[name] if name in parts else parts[f"{name}_a"] @ parts[f"{name}_b"]


def merged_weight(
    weight: torch.Tensor, parts: dict[str, torch.Tensor], kind: str, rank: int, alpha: float, multiplier: float
) -> torch.Tensor:
    """The merged weight in float32 for one module (`parts`: its tensors without the module prefix, in float32)."""
    base = weight.float()
    scale = alpha / rank
    if kind == "lora" and DORA_SCALE in parts:
        directional = base + scale * (parts["lora_B"] @ parts["lora_A"])
        decomposed = directional * (parts[DORA_SCALE] / column_norm(directional))
        return base + multiplier * (decomposed - base)
    if kind == "lora":
        delta = parts["lora_B"] @ parts["lora_A"]
    elif kind == "loha":
        delta = (parts["hada_w1_a"] @ parts["hada_w1_b"]) * (parts["hada_w2_a"] @ parts["hada_w2_b"])
    elif kind == "lokr":
        delta = torch.kron(_factor(parts, "lokr_w1"), _factor(parts, "lokr_w2"))
    else:
        raise ValueError(f"adapter type {kind!r} cannot be merged; expected lora, loha or lokr")
    if delta.shape != base.shape:
        raise ValueError(f"the adapter's update has shape {list(delta.shape)}, the weight {list(base.shape)}")
    return base + (multiplier * scale) * delta


def module_parts(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """peft state dict (`blocks.0.attn1.to_q.lora_A.weight`, `....hada_w1_a`) -> module -> {part: tensor}."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        name = key.removesuffix(".weight")
        module, part = name.rsplit(".", 1)
        modules.setdefault(module, {})[part] = value.float()
    return modules


@torch.no_grad()
def merge_adapter(
    transformer: nn.Module,
    state_dict: dict[str, torch.Tensor],
    kind: str,
    rank: int,
    alpha: float,
    multiplier: float,
) -> list[str]:
    """Add the adapter's update, times `multiplier`, into each targeted linear's weight in place (rounded once to the
    weight's dtype); returns the merged module names. Only plain 16/32-bit linears: storage conversions (fp8,
    int8, nf4) come after merging, so the update is quantised with the weight, not added to quantised bytes."""
    merged = []
    for module_name, parts in module_parts(state_dict).items():
        linear = transformer.get_submodule(module_name)
        if type(linear) is not nn.Linear or not linear.weight.dtype.is_floating_point or linear.weight.itemsize < 2:
            raise ValueError(
                f"{module_name}: a {type(linear).__name__} ({linear.weight.dtype}) cannot take a merged LoRA; "
                "base LoRAs are merged before fp8/int8/nf4 storage is applied"
            )
        new = merged_weight(linear.weight, parts, kind, rank, alpha, multiplier)
        linear.weight.copy_(new.to(linear.weight.dtype))
        merged.append(module_name)
    return merged
