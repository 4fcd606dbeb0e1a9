"""WanFineTuneSetup: full fine-tuning of the WAN 2.2 transformer(s), optionally of selected blocks only.

The objective, timestep draw, expert routing and offloading are WanTrainingSetup's (one objective for every
method); only what trains differs: the expert's own weights instead of adapters.
"""

from __future__ import annotations

import re

import torch

from modules.config.validation import ConfigError
from modules.module.lora import filter_matcher
from modules.util.device import DTYPES
from modules.wan.model import WanModel
from modules.wan.training.setup_base import WanTrainingSetup

# "3" or "0-9": block indices; every other filter item is a name substring or regex (modules/module/lora.py).
_BLOCK_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")


def block_filter_matcher(block_filter: str, num_blocks: int):
    """A predicate on parameter names for `finetune.block_filter`; empty: every parameter."""
    if not block_filter.strip():
        return lambda name: True
    indices: set[int] = set()
    patterns = []
    for item in (part.strip() for part in block_filter.split(",")):
        match = _BLOCK_RANGE.match(item)
        if not match:
            if item:
                patterns.append(item)
            continue
        low, high = int(match[1]), int(match[2] or match[1])
        if low > high or high >= num_blocks:
            raise ConfigError(
                f"finetune.block_filter: {item!r} is not a block range of this model (blocks 0-{num_blocks - 1}); "
                "write e.g. '0-9' or '30'"
            )
        indices.update(range(low, high + 1))
    try:
        by_name = filter_matcher(",".join(patterns)) if patterns else None
    except ValueError as error:
        raise ConfigError(f"finetune.block_filter: {error}") from None

    def matches(name: str) -> bool:
        block = _BLOCK_INDEX.match(name)
        if block and int(block[1]) in indices:
            return True
        return by_name is not None and by_name(name)

    return matches


def trainable_parameter_names(transformer: torch.nn.Module, block_filter: str) -> list[str]:
    matches = block_filter_matcher(block_filter, len(transformer.blocks))
    names = [name for name, _ in transformer.named_parameters() if matches(name)]
    if not names:
        raise ConfigError(
            f"finetune.block_filter: {block_filter!r} selects no weight of the transformer. "
            "Fix: use block indices such as '0-3' or name parts such as 'attn1' or 'ffn' (empty trains everything)."
        )
    return names


class WanFineTuneSetup(WanTrainingSetup):
    shards_weights = True  # several processes shard the experts with FSDP (sharding_plan)

    def setup_model(self, model: WanModel, config) -> None:
        self.freeze_and_route(model, config)
        weight_dtype = DTYPES[config.finetune.weight_dtype]
        for name in model.trained_experts:
            expert = getattr(model, name)
            # The whole expert takes the training dtype (not only its trained part), so every matmul sees one
            # dtype: float32 here acts as master weights for a bfloat16 base.
            if {p.dtype for p in expert.parameters()} != {weight_dtype}:
                expert.to(weight_dtype)
            trained = set(trainable_parameter_names(expert, config.finetune.block_filter))
            for parameter_name, parameter in expert.named_parameters():
                parameter.requires_grad_(parameter_name in trained)
            if config.training.gradient_checkpointing:
                expert.enable_gradient_checkpointing()
            expert.train()

    def sharding_plan(self, model: WanModel) -> list[tuple[torch.nn.Module, list[torch.nn.Module]]]:
        # One FSDP unit per WanTransformerBlock: only one block's full weights are gathered at a time.
        return [(getattr(model, name), list(getattr(model, name).blocks)) for name in model.trained_experts]

    def trainable_state_dict(self, model: WanModel) -> dict[str, torch.Tensor]:
        return {
            f"{name}.{key}": parameter
            for name in model.trained_experts
            for key, parameter in getattr(model, name).named_parameters()
            if parameter.requires_grad
        }
