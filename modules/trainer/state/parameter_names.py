"""Backups name each trained tensor by the setup's `trainable_state_dict` (BaseModelSetup), not by its position.

A resume then matches tensors by name: a run whose parameters come in another order (a changed group layout, a
new torch) resumes the same weights, optimizer moments and EMA, and a backup's `weights.safetensors` reads as
the trained weights under their own names (for LoRA, `<expert>.<peft name>`: loadable into an attached adapter
with modules/module/lora.py `set_lora_state_dict`). Backups written before names were stored hold `param.<i>`
tensors; they are read by position, as they were written, once their shapes and dtypes fit (`legacy_names`).
"""

from __future__ import annotations

import torch

LEGACY_PREFIX = "param."


def parameter_names(setup, model, parameters: list[torch.Tensor]) -> list[str]:
    """The name of each of `parameters` (the optimizer's order) in `setup.trainable_state_dict(model)`, whose
    tensors are the parameters themselves or share their storage (peft's state dict: detached views)."""
    named = setup.trainable_state_dict(model)
    by_identity: dict[int, str] = {}
    by_storage: dict[tuple[int, int], str] = {}
    for name in sorted(named):  # shared weights (experts.shared_lora) take the first name
        tensor = named[name]
        by_identity.setdefault(id(tensor), name)
        by_storage.setdefault((tensor.data_ptr(), tensor.numel()), name)
    names = []
    for index, parameter in enumerate(parameters):
        name = by_identity.get(id(parameter)) or by_storage.get((parameter.data_ptr(), parameter.numel()))
        if name is None:
            raise RuntimeError(
                f"trained parameter {index} ({tuple(parameter.shape)}) is not in {type(setup).__name__}."
                "trainable_state_dict: the setup must name every parameter it puts in parameter_groups"
            )
        names.append(name)
    if len(set(names)) != len(names):
        raise RuntimeError(f"{type(setup).__name__}.trainable_state_dict names two trained parameters alike")
    return names


def legacy_names(count: int) -> list[str]:
    """The positional names of a backup written before names were stored."""
    return [f"{LEGACY_PREFIX}{index}" for index in range(count)]


def reorder_optimizer_state(state_dict: dict, saved_index: list[int]) -> dict:
    """A torch optimizer state dict from a backup, renumbered for this run: `saved_index[j]` is the backup's number
    of the parameter this run numbers j. torch pairs a group's saved numbers with its parameters by position, so
    each group's numbers are this run's, in this run's order."""
    if saved_index == list(range(len(saved_index))):
        return state_dict
    current = {saved: now for now, saved in enumerate(saved_index)}
    state = {current[int(saved)]: entry for saved, entry in state_dict["state"].items()}
    groups = [{**group, "params": sorted(current[p] for p in group["params"])} for group in state_dict["param_groups"]]
    return {"state": state, "param_groups": groups}
