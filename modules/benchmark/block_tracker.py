"""Where in the step a transformer is: 'forward of block 3', 'backward of block 31', 'recompute of block 7'.

Hooks on every block record the last place entered, so an out-of-memory error can be reported where it happened.
A test can also make a chosen place raise the out-of-memory error torch raises, to exercise that path on a CPU.
"""

from __future__ import annotations

import torch


class BlockTracker:
    def __init__(self, blocks: torch.nn.ModuleList, fail_at: str | None = None):
        """`fail_at` ('forward:3', 'backward:0'): raise torch.OutOfMemoryError on entering that place."""
        self.where = "before the first block"
        self.in_backward = False
        self.fail_at = fail_at
        self.handles = []
        for index, block in enumerate(blocks):
            self.handles.append(block.register_forward_pre_hook(self._forward_hook(index)))
            self.handles.append(block.register_full_backward_pre_hook(self._backward_hook(index)))

    def new_step(self) -> None:
        self.in_backward = False
        self.where = "before the first block"

    def _enter(self, phase: str, index: int) -> None:
        self.where = f"{phase} of block {index}"
        if self.fail_at == f"{phase}:{index}":
            raise torch.OutOfMemoryError(f"CUDA out of memory (forced by the benchmark at {self.where})")

    def _forward_hook(self, index: int):
        def hook(module, args):
            # A block forward after backward has begun is gradient checkpointing's recomputation.
            self._enter("recompute" if self.in_backward else "forward", index)

        return hook

    def _backward_hook(self, index: int):
        def hook(module, grad_output):
            self.in_backward = True
            self._enter("backward", index)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
