"""Block swapping's bounded staging buffer (modules/module/block_swap.py `StagingBuffer`): what goes through it comes
out bit-equal, a swapped step through it equals the step without swapping, and its size is the window's blocks
whatever the number of swapped blocks. On CUDA the buffer is pinned and used by default; here it is forced on."""

from __future__ import annotations

import pytest
import torch

from modules.module.block_swap import BlockSwapper, StagingBuffer, staged_bytes
from tests.test_block_swap import BLOCKS, WINDOW, bit_equal, lora_transformer, step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_staged_tensors_are_bit_equal_and_a_slot_holds_one_block():
    generator = torch.Generator().manual_seed(0)
    block = [
        torch.randn(5, 7, generator=generator).to(torch.float8_e4m3fn),  # 35 bytes: the next starts aligned anyway
        torch.randn(3, 3, generator=generator).to(torch.bfloat16),
        torch.randn(11, generator=generator),
        torch.tensor(0.25),  # a per-tensor scale
    ]
    staging = StagingBuffer(staged_bytes(block), 2, pin=False)
    assert staging.nbytes == 2 * staged_bytes(block) and staged_bytes(block) % 64 == 0
    for _ in range(3):  # slots reused in turn
        _, views = staging.stage(block)
        for view, tensor in zip(views, block):
            assert view.dtype == tensor.dtype and view.shape == tensor.shape
            assert torch.equal(view.reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8))
            assert staging.buffer.data_ptr() <= view.data_ptr() < staging.buffer.data_ptr() + staging.nbytes
    with pytest.raises(ValueError, match="do not fit"):
        staging.stage(block + [torch.zeros(100)])


@pytest.mark.parametrize("swapped", [2, 4])
def test_a_step_through_staging_is_bit_equal_and_the_buffer_is_the_window(swapped):
    plain = step(lora_transformer(), checkpointing=True)
    transformer = lora_transformer()
    indices = list(range(BLOCKS - swapped, BLOCKS))
    swapper = BlockSwapper(transformer.blocks, indices, window=WINDOW, staging=True)
    before = swapper.staging.staged  # the buffer is shared by the swappers alive with the same block size
    staged = step(transformer, checkpointing=True)
    assert bit_equal(plain[0], staged[0]) and bit_equal(plain[1], staged[1])
    assert plain[2].keys() == staged[2].keys() and all(bit_equal(plain[2][k], staged[2][k]) for k in plain[2])
    block = max(staged_bytes(slot.storage for slot in swapper.slots[i]) for i in indices)
    assert swapper.staging.nbytes == WINDOW * block  # bounded by the window, not by the swapped blocks
    tensors = sum(len(swapper.slots[i]) for i in indices)
    assert swapper.staging.staged - before == 2 * tensors  # every copy (forward and backward) went through it
    stored = sum(slot.storage.numel() * slot.storage.element_size() for i in indices for slot in swapper.slots[i])
    assert (swapper.staging.nbytes < stored) == (swapped > WINDOW)
    other = BlockSwapper(lora_transformer(seed=1).blocks, indices, window=WINDOW, staging=True)
    assert other.staging is swapper.staging  # a second expert of the same shape adds no pinned memory
