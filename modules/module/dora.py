"""DoRA (weight-decomposed LoRA) in the orientation ComfyUI applies: one magnitude per input column.

ComfyUI merges a LoRA that carries `dora_scale` (shape (1, in)) as
    W' = (W + s * B @ A) * dora_scale / column_norm(W + s * B @ A),   s = alpha / rank,
with the norm of each column taken over the output dimension. peft's own DoRA (use_dora) keeps one magnitude
per output row instead, which a ComfyUI file cannot express, so this module adds the column form on top of a
plain peft LoRA: scaling each column of a weight equals scaling each input feature, so a forward pre-hook
multiplies the layer's input by dora_scale / column_norm and peft's LoRA layer then computes exactly
x @ W'^T + bias. The norm is treated as a constant in the backward pass, as in the DoRA paper (and peft).
The magnitude starts at column_norm(W), so a fresh adapter leaves the model unchanged.
"""

from __future__ import annotations

import torch
from peft.tuners.lora import LoraLayer

from modules.module.fp8_linear import dequantise

DORA_SCALE = "dora_scale"  # the key suffix ComfyUI reads; also the parameter's name on the layer
_ATTRIBUTE = "wan_dora_scale"


def column_norm(weight: torch.Tensor) -> torch.Tensor:
    """(1, in): the norm of each column of a linear weight (out, in)."""
    return weight.norm(dim=0, keepdim=True)


def _dense_weight(base: torch.nn.Module) -> torch.Tensor:
    """The base layer's weight in float32; an fp8 layer (fp8_linear.Fp8Linear) with its scale applied."""
    scale = getattr(base, "scale_weight", None)
    return base.weight.float() if scale is None else dequantise(base.weight, scale, torch.float32)


def _layers(transformer: torch.nn.Module) -> dict[str, LoraLayer]:
    return {name: m for name, m in transformer.named_modules() if isinstance(m, LoraLayer)}


def _scale_input(layer: LoraLayer, args: tuple):
    adapter = layer.wan_dora_adapter
    if layer.disable_adapters or adapter not in layer.active_adapters or not args:
        return None
    x = args[0]
    with torch.no_grad():  # a constant in the backward pass
        delta = layer.lora_B[adapter].weight.float() @ layer.lora_A[adapter].weight.float()
        norm = column_norm(_dense_weight(layer.get_base_layer()) + layer.scaling[adapter] * delta)
    factor = getattr(layer, _ATTRIBUTE) / norm
    return (x * factor.reshape(-1).to(x.dtype), *args[1:])


def add_dora(transformer: torch.nn.Module, adapter_name: str = "default") -> list[str]:
    """Give every LoRA layer of `adapter_name` a trainable DoRA magnitude; returns the module names."""
    names = []
    for name, layer in _layers(transformer).items():
        if adapter_name not in layer.lora_A:
            continue
        if hasattr(layer, _ATTRIBUTE):
            raise ValueError(
                f"{name}: already carries a DoRA adapter ({layer.wan_dora_adapter!r}); one DoRA adapter per layer. "
                "Fix: sample one DoRA LoRA at a time"
            )
        with torch.no_grad():
            weight = _dense_weight(layer.get_base_layer())
        layer.register_parameter(_ATTRIBUTE, torch.nn.Parameter(column_norm(weight)))
        layer.wan_dora_adapter = adapter_name
        layer.wan_dora_hook = layer.register_forward_pre_hook(_scale_input)
        names.append(name)
    return names


def remove_dora(transformer: torch.nn.Module, adapter_name: str) -> None:
    for layer in _layers(transformer).values():
        if getattr(layer, "wan_dora_adapter", None) == adapter_name:
            layer.wan_dora_hook.remove()
            del layer.wan_dora_hook, layer.wan_dora_adapter
            delattr(layer, _ATTRIBUTE)


def dora_state_dict(transformer: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """`blocks.0.attn1.to_q.dora_scale` -> (1, in) magnitude (live tensors), for layers with DoRA."""
    return {
        f"{name}.{DORA_SCALE}": getattr(layer, _ATTRIBUTE)
        for name, layer in _layers(transformer).items()
        if getattr(layer, "wan_dora_adapter", None) == adapter_name
    }


def set_dora_state_dict(
    transformer: torch.nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str = "default"
) -> None:
    live = dora_state_dict(transformer, adapter_name)
    if set(live) != set(state_dict):
        raise KeyError(
            f"DoRA magnitudes do not fit adapter {adapter_name!r}: missing {sorted(set(live) - set(state_dict))[:3]}, "
            f"unexpected {sorted(set(state_dict) - set(live))[:3]}"
        )
    with torch.no_grad():
        for key, value in state_dict.items():
            live[key].copy_(value)


def share_dora(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Two experts training one adapter share its magnitudes too."""
    source_layers = _layers(source)
    for name, layer in _layers(target).items():
        if hasattr(layer, _ATTRIBUTE):
            setattr(layer, _ATTRIBUTE, getattr(source_layers[name], _ATTRIBUTE))
