"""Activation offloading's slot pool (modules/module/host_slots.py) and exact-size host buffers (host_buffer.py).

The host-memory plan counts offloaded block inputs at their exact size; these tests hold the pool to that on a real
(tiny) WAN transformer: one slot per block input parked at once, each exactly an input's bytes (from the shape the
first block receives), none made again on the next step, the pool no larger after a larger bucket than one slot per
input, and the step bit-equal to plain checkpointing throughout. The buffers themselves are measured in the
process's anonymous memory: they take their size (not a power of two) and give it back when closed. What the CPU
cannot show is the page-locking call itself (`cudaHostRegister`), which only a CUDA or ROCm build has.
"""

from __future__ import annotations

import gc

import pytest
import torch

from modules.module.activation_offload import offload_activations, offload_slot_pool
from modules.module.host_buffer import PAGE, host_buffer, page_rounded, pinned_bytes
from tests.process_memory import anonymous_resident
from tests.test_block_swap import BLOCKS, bit_equal, lora_transformer, step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def block_input_bytes(transformer, height: int, width: int, frames: int = 2) -> int:
    """A block input's bytes from the config: latent frames x (height/2) x (width/2) tokens of the inner width, in
    float32 (WAN's patch is 1 x 2 x 2)."""
    config = transformer.config
    t, h, w = config.patch_size
    tokens = (frames // t) * (height // h) * (width // w)
    return tokens * config.num_attention_heads * config.attention_head_dim * 4


def forward(transformer, height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(height * width)
    return transformer(
        hidden_states=torch.randn(1, transformer.config.in_channels, 2, height, width, generator=generator),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 7, transformer.config.text_dim, generator=generator),
        return_dict=False,
    )[0]


def offloading_transformer():
    transformer = lora_transformer()
    transformer.enable_gradient_checkpointing()
    offload_activations(transformer)
    transformer.train()
    pool = offload_slot_pool(transformer, pin=False)
    pool.release_free()  # another test's slots (the pool is shared while a transformer holds it)
    return transformer, pool


def test_slots_are_exact_reused_every_step_and_the_step_stays_bit_equal():
    reference = step(lora_transformer(), checkpointing=True)
    transformer, pool = offloading_transformer()
    created = pool.created
    first = step(transformer, checkpointing=True)
    assert pool.created - created == BLOCKS  # one per block input parked at once
    assert pool.lent == 0  # every slot came back after its block's backward
    second = step(transformer, checkpointing=True)
    assert pool.created - created == BLOCKS  # the second step found its slots free
    for output, loss, grads in (first, second):
        assert bit_equal(output, reference[0]) and bit_equal(loss, reference[1])
        assert all(bit_equal(grads[name], reference[2][name]) for name in grads)


def test_slots_take_the_inputs_exact_size_and_a_larger_bucket_replaces_them():
    transformer, pool = offloading_transformer()
    seen = []
    transformer.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    small = block_input_bytes(transformer, 12, 16)  # 96 tokens: 3 pages, where a power of two would take 4
    forward(transformer, 12, 16).square().mean().backward()
    assert seen[-1].numel() * seen[-1].element_size() == small  # the formula is the input the block received
    assert small % PAGE == 0 and pool.held_bytes == BLOCKS * small

    large = block_input_bytes(transformer, 24, 20)  # 240 tokens: 7.5 pages
    output = forward(transformer, 24, 20)  # its graph is dropped without a backward pass
    assert pool.lent == BLOCKS
    del output
    gc.collect()
    assert pool.lent == 0  # given back with the graph
    assert pool.held_bytes == BLOCKS * page_rounded(large)  # the small slots were dropped, not kept beside
    created = pool.created
    forward(transformer, 12, 16).square().mean().backward()  # a smaller bucket fits the larger slots
    assert pool.created == created and pool.held_bytes == BLOCKS * page_rounded(large)


def test_a_host_buffer_takes_its_exact_size_and_gives_it_back():
    size = 48 * 1024 * 1024 + 123  # a power-of-two allocator would take 64 MiB
    pinned_before = pinned_bytes()
    before = anonymous_resident()
    buffer = host_buffer(size, pin=False)
    assert pinned_bytes() == pinned_before  # not page-locked: not counted as pinned
    assert buffer.nbytes == buffer.held == page_rounded(size) < size + PAGE
    assert buffer.tensor.data_ptr() % PAGE == 0
    buffer.tensor.fill_(7)  # the pages become resident when written
    grown = anonymous_resident() - before
    assert abs(grown - page_rounded(size)) < 4 * 1024 * 1024, grown
    buffer.close()
    del buffer
    gc.collect()
    assert anonymous_resident() - before < 4 * 1024 * 1024  # unmapped, not kept in the heap
