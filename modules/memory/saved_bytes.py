"""Count the bytes autograd keeps for the backward pass: the ground truth the planner's activation term is checked
against (tests/test_memory_planner.py) and that scripts can print.

Every tensor saved for backward goes through `torch.autograd.graph.saved_tensors_hooks`; we record its storage once
(several saved views of one storage cost its bytes once) and leave out storages given in `exclude` (the weights,
which the planner counts as resident weights, and the inputs, which it counts where they are made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def count_saved_bytes(run: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> tuple[int, object]:
    """(bytes saved for backward while `run()` executes, its result)."""
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in excluded:
            storages[pointer] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return sum(storages.values()), result
