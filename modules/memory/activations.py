"""Bytes a transformer block keeps for its backward pass, as a formula in the block's shape.

The coefficients were measured with modules/memory/saved_bytes.py on diffusers' WanTransformerBlock under bf16
autocast (tests/test_memory_planner.py re-measures them at tiny and at the real 5B and 14B widths); the derivation
is in docs/presets.md. All numbers are bytes for one clip (batch 1) at a 16-bit compute dtype; a float32 compute
dtype doubles them.

Per token of one block, with d = dim, f = ffn_dim, h = heads, r = LoRA rank:
  36 d + 2 f + 8 h + 36            the frozen block (norm inputs and statistics, q/k/v/out inputs, attention
                                   outputs and log-sum-exp, the feed-forward input, hidden and GELU)
  + 14 d + 2 f + 16 r              with LoRA on every linear (peft's casts of the layer inputs, the rank-r hiddens)
  + 32 d                           with one timestep per token (TI2V-5B: the modulation is per token, in float32)
Per block, independent of the clip (cross-attention over T text tokens):
  T (4 d)  [+ T (8 d + 12 r) with LoRA]
Around the blocks, per token: 8 x head_dim (the rotary tables, float32) without per-token modulation.
With gradient checkpointing each block keeps only its 16-bit input (2 d per token) during the forward pass, plus,
around the blocks, 4 d + 8 per token (18 d + 8 with per-token modulation) and 2 d per text token; the backward pass
then recomputes one block at a time, holding that block's full set above.
"""

from __future__ import annotations

from modules.memory.facts import TransformerFacts


def block_bytes_per_token(block: TransformerFacts, lora_rank: int = 0) -> float:
    d, f, h = block.dim, block.ffn_dim, block.heads
    total = 36 * d + 2 * f + 8 * h + 36
    if lora_rank:
        total += 14 * d + 2 * f + 16 * lora_rank
    if block.per_token_modulation:
        total += 32 * d
    return total


def block_bytes_per_clip(block: TransformerFacts, text_tokens: int, lora_rank: int = 0) -> float:
    d = block.dim
    return text_tokens * (4 * d + ((8 * d + 12 * lora_rank) if lora_rank else 0))


def block_saved_bytes(block: TransformerFacts, tokens: int, text_tokens: int, lora_rank: int = 0) -> float:
    """Everything one block keeps for backward (un-checkpointed, or while it is recomputed)."""
    return tokens * block_bytes_per_token(block, lora_rank) + block_bytes_per_clip(block, text_tokens, lora_rank)


def model_saved_bytes(
    model: TransformerFacts, tokens: int, text_tokens: int, lora_rank: int = 0, checkpointing: bool = False
) -> float:
    """What the whole transformer keeps from the end of its forward pass until backward starts."""
    if checkpointing:
        around = (18 * model.dim + 8) if model.per_token_modulation else (4 * model.dim + 8)
        return model.num_blocks * tokens * 2 * model.dim + tokens * around + text_tokens * 2 * model.dim
    around = 0 if model.per_token_modulation else 8 * model.head_dim
    return model.num_blocks * block_saved_bytes(model, tokens, text_tokens, lora_rank) + tokens * around


def backward_working_bytes(model: TransformerFacts, tokens: int) -> float:
    """Gradients in flight while one block's backward runs (an estimate, not measured: the feed-forward hidden's
    gradient and GELU's, and a few dim-wide gradients, in 16 bits)."""
    return tokens * 2 * (2 * model.ffn_dim + 4 * model.dim)
