"""LoRA adapters on a WanTransformer3DModel through peft (the same layers diffusers' LoRA loader creates).

Adapters are attached with diffusers' `add_adapter` so a trained model behaves exactly like a pipeline that
loaded the saved file. Adapter weights are float32 even on a bf16/fp16 base: tiny updates to low-precision
weights would round away, and peft casts the layer input to the adapter dtype and the result back.
"""

from __future__ import annotations

import re

import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from modules.module.dora import DORA_SCALE, add_dora, dora_state_dict, set_dora_state_dict
from modules.module.lora_variants import adapter_config, make_adapter_float32

# The linears of each transformer block: self- and cross-attention q/k/v/out and the feed-forward pair.
DEFAULT_TARGET_MODULES: list[str] = [
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "ffn.net.0.proj",
    "ffn.net.2",
]
# Only block linears are offered: the file formats (and diffusers' converter of ComfyUI files) handle alphas
# of block modules only, and embedders/heads are not what a LoRA should change.
_BLOCK_PREFIX = re.compile(r"^blocks\.\d+\.")
# Characters that make a layer-filter item a regular expression instead of a plain substring. "." is not
# among them: "blocks.1." must mean block 1, not also "blocks.10" (which the regex "blocks.1." matches).
_REGEX_CHARS = set("^$*+?{}[]\\|()")


def split_filter(layer_filter: str) -> list[str]:
    """Split on commas that are not inside (), [] or {} (so "x{1,2}" stays one item); drop empty items."""
    items, depth, current = [], 0, []
    for char in layer_filter:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def filter_matcher(layer_filter: str | None):
    """A predicate on module names: an item with regex characters is re.search'ed, any other is a substring."""
    if not layer_filter:
        return lambda name: True
    tests = []
    for item in split_filter(layer_filter):
        if _REGEX_CHARS & set(item):
            try:
                pattern = re.compile(item)
            except re.error as error:
                raise ValueError(f"layer_filter item {item!r} is not a valid regular expression: {error}") from None
            tests.append(pattern.search)
        else:
            tests.append(lambda name, item=item: item in name)
    return lambda name: any(test(name) for test in tests)


def _is_linear(module: torch.nn.Module) -> bool:
    # A linear that already carries an adapter is a peft wrapper around it; it may take a second adapter.
    if isinstance(module, BaseTunerLayer):
        return isinstance(module.get_base_layer(), torch.nn.Linear)
    return isinstance(module, torch.nn.Linear)


def select_lora_modules(
    transformer: torch.nn.Module, target_modules: list[str] | None = None, layer_filter: str | None = None
) -> list[str]:
    """Full names of the block linears whose name is, or ends with ".", one of `target_modules`, filtered."""
    linears = [name for name, module in transformer.named_modules() if _is_linear(module)]
    return select_lora_names(linears, target_modules, layer_filter)


def select_lora_names(
    linear_names: list[str], target_modules: list[str] | None = None, layer_filter: str | None = None
) -> list[str]:
    """`select_lora_modules` on the names of a model's linears (also from its file headers, before it loads)."""
    targets = target_modules or DEFAULT_TARGET_MODULES
    matches = filter_matcher(layer_filter)
    names = [
        name
        for name in linear_names
        if _BLOCK_PREFIX.match(name) and any(name == t or name.endswith("." + t) for t in targets) and matches(name)
    ]
    if not names:
        raise ValueError(
            f"LoRA: no block linear matches target_modules={targets} and layer_filter={layer_filter!r}. "
            "Fix: widen layer_filter (e.g. 'blocks.0.,blocks.1.' or 'attn1') or leave it empty for all."
        )
    return names


def attach_lora(
    transformer: torch.nn.Module,
    *,
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
    layer_filter: str | None = None,
    adapter_name: str = "default",
    kind: str = "lora",
    factor: int = -1,
    use_dora: bool = False,
    decompose_both: bool = False,
) -> list[str]:
    """Add an adapter (its update starts at zero, so the model is unchanged) and return the module names.
    `kind` is lora, loha or lokr (modules/module/lora_variants.py); `factor` is LoKr's decompose factor;
    `use_dora` adds DoRA magnitudes to a plain LoRA (modules/module/dora.py); `decompose_both`: LoKr's first factor
    is a product of two matrices too."""
    if use_dora and kind != "lora":
        raise ValueError(f"lora.use_dora: DoRA applies to lora.type 'lora', not {kind!r}. Fix: turn one of them off")
    names = select_lora_modules(transformer, target_modules, layer_filter)
    # Full names: peft matches a name exactly (or as a dotted suffix), so nothing else is picked up.
    config = adapter_config(
        kind,
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        target_modules=names,
        factor=factor,
        decompose_both=decompose_both,
    )
    transformer.add_adapter(config, adapter_name=adapter_name)
    make_adapter_float32(transformer, adapter_name)
    if use_dora:
        add_dora(transformer, adapter_name)
    return names


def lora_layers(transformer: torch.nn.Module) -> dict[str, LoraLayer]:
    """Module name -> peft LoRA layer, for every layer that carries an adapter."""
    return {name: m for name, m in transformer.named_modules() if isinstance(m, LoraLayer)}


def lora_parameters(transformer: torch.nn.Module, adapter_name: str = "default") -> list[torch.nn.Parameter]:
    params = []
    for layer in lora_layers(transformer).values():
        for store in (layer.lora_A, layer.lora_B):
            if adapter_name in store:
                params.extend(store[adapter_name].parameters())
    return params


def lora_state_dict(transformer: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """`blocks.0.attn1.to_q.lora_A.weight` -> tensor (peft's names without the adapter name; live tensors),
    plus `<module>.dora_scale` for a DoRA adapter."""
    # peft's getter also picks up the magnitude parameter under its attribute name; it is named `dora_scale` here.
    peft = {
        k: v for k, v in get_peft_model_state_dict(transformer, adapter_name=adapter_name).items() if "dora" not in k
    }
    return {**peft, **dora_state_dict(transformer, adapter_name)}


def set_lora_state_dict(
    transformer: torch.nn.Module, state_dict: dict[str, torch.Tensor], adapter_name: str = "default"
) -> None:
    """Load LoRA weights into an attached adapter; raises if a key is missing or unknown (no silent partial load)."""
    expected = set(lora_state_dict(transformer, adapter_name))
    unexpected = sorted(set(state_dict) - expected)
    missing = sorted(expected - set(state_dict))
    if unexpected or missing:
        raise KeyError(
            f"LoRA state dict does not fit the attached adapter {adapter_name!r}: "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}. "
            "Fix: attach with the same rank, target modules and layer filter the file was trained with."
        )
    dora = {k: v for k, v in state_dict.items() if k.endswith("." + DORA_SCALE)}
    with torch.no_grad():
        set_peft_model_state_dict(
            transformer, {k: v for k, v in state_dict.items() if k not in dora}, adapter_name=adapter_name
        )
    if dora:
        set_dora_state_dict(transformer, dora, adapter_name)
    # set_peft_model_state_dict copies into the existing float32 parameters, so their dtype is kept.
