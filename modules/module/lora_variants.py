"""LoHa and LoKr adapters through peft, beside plain LoRA (modules/module/lora.py).

peft's LoHa and LoKr layers hold exactly the tensors ComfyUI's LoHa/LoKr loaders read (hada_w1_a ... and
lokr_w1/lokr_w2 or their _a/_b factors, same orientation), so a trained adapter is written without conversion
(modules/wan/formats/lycoris_keys.py). Their weight update is
  LoHa: (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / rank
  LoKr: kron(w1, w2) * alpha / rank, where w1/w2 are full matrices or products of _a/_b factors
with peft's rank/alpha, which ComfyUI applies the same way whenever a factor is decomposed.
"""

from __future__ import annotations

import torch
from peft import LoHaConfig, LoKrConfig, LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer

LORA_TYPES = ("lora", "loha", "lokr")


def adapter_config(
    kind: str,
    *,
    rank: int,
    alpha: float,
    dropout: float,
    target_modules: list[str],
    factor: int = -1,
    decompose_both: bool = False,
) -> LoraConfig | LoHaConfig | LoKrConfig:
    """The peft config of one adapter type; `target_modules` are full module names (exact matches).
    `factor` / `decompose_both`: LoKr's factor shapes (the trainer uses decompose_both=False; files of other
    tools may have a decomposed first factor)."""
    if kind == "lora":
        return LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, init_lora_weights=True
        )
    if kind == "loha":
        # rank_dropout drops rows of the update, LyCORIS' analogue of LoRA's input dropout.
        return LoHaConfig(r=rank, alpha=alpha, rank_dropout=dropout, target_modules=target_modules, init_weights=True)
    if kind == "lokr":
        return LoKrConfig(
            r=rank,
            alpha=alpha,
            rank_dropout=dropout,
            target_modules=target_modules,
            decompose_factor=factor,
            decompose_both=decompose_both,
            init_weights=True,
        )
    raise ValueError(f"lora.type: {kind!r} is unknown; choose one of {', '.join(LORA_TYPES)}")


def adapter_layers(transformer: torch.nn.Module) -> dict[str, BaseTunerLayer]:
    """Module name -> peft layer (LoRA, LoHa or LoKr) for every layer that carries an adapter."""
    return {name: m for name, m in transformer.named_modules() if isinstance(m, BaseTunerLayer)}


def _stores(layer: BaseTunerLayer):
    """(name, dict) of each per-adapter tensor store of a layer (lora_A, hada_w1_a, lokr_w2, ...)."""
    for name in layer.adapter_layer_names:
        store = getattr(layer, name, None)
        if isinstance(store, (torch.nn.ModuleDict, torch.nn.ParameterDict)):
            yield name, store


def adapter_parameters(transformer: torch.nn.Module, adapter_name: str = "default") -> list[torch.nn.Parameter]:
    params: list[torch.nn.Parameter] = []
    for layer in adapter_layers(transformer).values():
        for _, store in _stores(layer):
            if adapter_name in store:
                item = store[adapter_name]
                params.extend([item] if isinstance(item, torch.nn.Parameter) else item.parameters())
    return params


def make_adapter_float32(transformer: torch.nn.Module, adapter_name: str = "default") -> None:
    """Adapters train in float32 even on a low-precision base (tiny updates would round away)."""
    for param in adapter_parameters(transformer, adapter_name):
        param.data = param.data.float()


def share_adapter_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Make `target`'s adapter tensors the very parameters of `source`'s, so two experts train one adapter."""
    source_layers = adapter_layers(source)
    for name, layer in adapter_layers(target).items():
        source_stores = dict(_stores(source_layers[name]))
        for store_name, store in _stores(layer):
            for adapter in list(store.keys()):
                shared = source_stores[store_name][adapter]
                if isinstance(shared, torch.nn.Parameter):
                    store[adapter] = shared
                else:
                    for param_name, param in shared.named_parameters(recurse=False):
                        setattr(store[adapter], param_name, param)
