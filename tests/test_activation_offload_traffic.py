"""Activation offloading's CPU<->device traffic, counted copy by copy in a real step on the CPU, equals what the
memory planner's traffic_per_step says (the number the recommendation weighs settings by)."""

from __future__ import annotations

import pytest
import torch

from modules.config.loading import config_from_dict
from modules.module.activation_offload import TRAFFIC, offload_activations, offload_copies_per_step
from modules.planning import plan_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bytes_per_step_equal_the_planners_traffic(tiny_model_dir, demo_data_dir):
    from modules.wan.loading.loader import load_wan_model

    folder = tiny_model_dir("T2V-A14B")
    model = load_wan_model(folder, transformer_dtype=torch.float32, text_encoder_dtype=torch.float32)
    transformer = model.transformer.requires_grad_(False)
    for block in transformer.blocks:  # something to train, so the backward pass runs through every block
        block.ffn.net[2].weight.requires_grad_(True)
    transformer.enable_gradient_checkpointing()
    offload_activations(transformer)
    config = config_from_dict(
        {
            "model": {"base_path": str(folder)},
            "data": {"concepts": [{"path": str(demo_data_dir)}], "resolution": 64, "frames": 9},
            "training": {"train_dtype": "float32", "gradient_checkpointing": True},
            "memory": {"offload_activations": True},
        }
    )
    plan = plan_memory(config, None, model.memory_facts())
    # 64x64x9 pixels: 3 latent frames of 8x8, patches of 2x2 -> the plan's 48 tokens.
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 3, 8, 8, generator=generator)
    text = torch.randn(1, 8, transformer.config.text_dim, generator=generator)
    TRAFFIC.reset()
    output = transformer(latents, torch.tensor([500.0]), text, return_dict=False)[0]
    output.square().mean().backward()
    blocks = len(transformer.blocks)
    # Two per block: out after its forward, back before its recomputation.
    assert TRAFFIC.copies == offload_copies_per_step(blocks) == 2 * blocks
    # Every copy back but the first recomputed block's was started a block ahead.
    assert TRAFFIC.prefetched == blocks - 1
    assert plan.tokens == 48
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    assert TRAFFIC.bytes == plan.traffic_per_step() == 2 * blocks * 48 * width * 4  # float32 block inputs
