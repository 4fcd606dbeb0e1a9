"""The `memory` settings applied to a loaded WAN model: block swapping and activation offloading of its experts.

Every expert gets the swapper (modules/module/block_swap.py), the trained ones and the one only sampled alike, so
training steps, in-training samples and scripts/sample.py all run with the same blocks in CPU memory. The swapped
blocks are the last N: their copy for the backward pass is the first thing the backward needs, and the forward
reaches them after the resident blocks, which gives the first copy time to land.
"""

from __future__ import annotations

from modules.config.validation import ConfigError
from modules.module.activation_offload import offload_activations
from modules.module.block_swap import BlockSwapError, BlockSwapper


def swapped_blocks(num_blocks: int, blocks_to_swap: int) -> list[int]:
    if blocks_to_swap > num_blocks:
        raise ConfigError(
            f"memory.blocks_to_swap: {blocks_to_swap}, but the transformer has {num_blocks} blocks. "
            f"Fix: set it from 0 to {num_blocks}."
        )
    return list(range(num_blocks - blocks_to_swap, num_blocks))


def install_block_swap(model, blocks_to_swap: int, *, sampling_only: bool = False) -> list[BlockSwapper]:
    """Swap the last `blocks_to_swap` blocks of every expert (once; a second call finds them installed).

    `sampling_only` (scripts/sample.py): the model never trains, so its weights are frozen first (a freshly loaded
    model's parameters require grad, which would otherwise read as trained weights)."""
    if not blocks_to_swap:
        return []
    swappers = []
    for name, expert in (("transformer", model.transformer), ("transformer_2", model.transformer_2)):
        if expert is None:
            continue
        swapper = expert.__dict__.get("block_swapper")
        if swapper is None:
            if sampling_only:
                expert.requires_grad_(False)
            indices = swapped_blocks(len(expert.blocks), blocks_to_swap)
            _refuse_trained_blocks(expert, name, indices)
            try:
                swapper = BlockSwapper(expert.blocks, indices)
            except BlockSwapError as error:
                raise ConfigError(f"memory.blocks_to_swap: {error}") from None
            expert.__dict__["block_swapper"] = swapper
        swappers.append(swapper)
    return swappers


def _refuse_trained_blocks(expert, name: str, indices: list[int]) -> None:
    """A block whose own weights train (full fine-tuning) keeps them on the GPU with their optimizer state, so
    swapping it would save nothing of what it trains; such a plan is refused rather than half done."""
    trained = sorted(
        {
            index
            for index in indices
            for parameter_name, parameter in expert.blocks[index].named_parameters()
            if parameter.requires_grad and "lora_" not in parameter_name
        }
    )
    if trained:
        first = min(indices)
        raise ConfigError(
            f"memory.blocks_to_swap: swaps blocks {first}-{max(indices)} of {name}, but blocks {trained[:8]} train "
            "their own weights (finetune.block_filter). Swapped blocks must be frozen. Fix: lower "
            f"memory.blocks_to_swap so that it swaps only blocks after the last trained one "
            f"(at most {len(expert.blocks) - 1 - max(trained)}), or train a LoRA."
        )


def apply_memory_settings(model, config) -> None:
    """Called by the training setups once what trains is known (adapters attached, requires_grad set)."""
    memory = config.memory
    install_block_swap(model, memory.blocks_to_swap)
    if memory.offload_activations:
        for expert in model.experts():
            if getattr(expert, "gradient_checkpointing", False):
                offload_activations(expert)
