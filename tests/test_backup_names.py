"""Backups name their tensors (BaseModelSetup.trainable_state_dict): a resume matches weights, optimizer moments and
EMA by name, so it does not depend on the parameters' order; a backup written before names (positional `param.<i>`)
still resumes to the same state, or is refused with a message saying why; a backup's LoRA weights load into an
adapter by their names.

One real 4-step LoRA run on the tiny TI2V-5B model (EMA on) writes the backup; the resumes are real trainers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from modules.module.lora import lora_state_dict, set_lora_state_dict
from modules.registry import plugin_for
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.backups import BackupError, backup_folders, check_backup, read_backup, write_backup
from modules.trainer.state.parameter_names import parameter_names
from modules.wan.training.lora_setup import WanLoRASetup
from tests.test_ema import lora_config

pytestmark = pytest.mark.slow


class ReversedOrderSetup(WanLoRASetup):
    """The LoRA setup with its parameters handed to the optimizer in the opposite order."""

    def parameter_groups(self, model, config):
        return [
            {**group, "params": list(reversed(group["params"]))} for group in super().parameter_groups(model, config)
        ]


def resumed(config, setup=None) -> GenericTrainer:
    plugin = plugin_for(config.model_type, config.training_method)
    trainer = GenericTrainer(config, replace(plugin, setup=setup) if setup else plugin)
    trainer.load_and_cache()
    trainer.set_up_training()  # resumes here (backup.continue_last_backup)
    return trainer


def by_name(trainer) -> dict[str, dict[str, torch.Tensor]]:
    """Weights, EMA and optimizer moments of each trained parameter, under its name."""
    names = parameter_names(trainer.setup, trainer.model, trainer.parameters)
    moments = trainer.optimizer.state_dict()["state"]
    return {
        name: {
            "weight": parameter.detach().clone(),
            "ema": trainer.ema.shadow[index].clone(),
            **{key: value.clone() for key, value in moments[index].items() if torch.is_tensor(value) and value.dim()},
        }
        for index, (name, parameter) in enumerate(zip(names, trainer.parameters))
    }


def assert_same(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].keys() == right[name].keys(), name
        assert all(torch.equal(left[name][k], right[name][k]) for k in left[name]), name


def to_positional(folder, names: list[str]):
    """Rewrite a named backup as backups were written before names (`param.<i>` / `ema.<i>` in optimizer order, no
    names in the state), through the backup writer itself; returns the new folder (the old one is removed)."""
    contents = read_backup(folder)
    for stem, prefix in (("weights", "param."), ("ema", "ema.")):
        contents.tensors[stem] = {f"{prefix}{i}": contents.tensors[stem][name] for i, name in enumerate(names)}
    contents.state["parameters"] = [{k: v for k, v in e.items() if k != "name"} for e in contents.state["parameters"]]
    rewritten = write_backup(folder.parent, contents, check_backup(folder)["global_step"])
    shutil.rmtree(folder)
    return rewritten


def test_named_backups_resume_by_name_migrate_old_ones_and_hold_a_loadable_lora(tiny_model_dir, tmp_path):
    config = lora_config(tiny_model_dir("TI2V-5B"), tmp_path)
    config.training.max_steps, config.backup.every_steps = 4, 4
    writer = GenericTrainer(config)
    writer.train()
    (folder,) = backup_folders(tmp_path / "run" / "backups")
    names = parameter_names(writer.setup, writer.model, writer.parameters)
    assert set(load_file(folder / "weights.safetensors")) == set(names)
    assert all(name.startswith("transformer.blocks.") and ".lora_" in name for name in names)

    config.backup.continue_last_backup = True
    reference = by_name(resumed(config))
    assert_same(reference, by_name(writer))  # the resume put back exactly what was written

    # Another parameter order: the same weights, moments and EMA land on the same names.
    reversed_trainer = resumed(config, ReversedOrderSetup)
    assert parameter_names(reversed_trainer.setup, reversed_trainer.model, reversed_trainer.parameters) == names[::-1]
    assert_same(by_name(reversed_trainer), reference)

    # The backup's weights are the LoRA under peft's names: they load into a freshly attached adapter.
    fresh = writer.model.transformer
    weights = load_file(folder / "weights.safetensors")
    expert = {name.removeprefix("transformer."): tensor for name, tensor in weights.items()}
    set_lora_state_dict(fresh, expert)
    assert all(torch.equal(lora_state_dict(fresh)[k], v) for k, v in expert.items())

    # A backup from before names, in this run's order: migrated by position, the same state as the named one.
    old = to_positional(folder, names)
    assert set(read_backup(old).tensors["weights"]) == {f"param.{i}" for i in range(len(names))}
    assert_same(by_name(resumed(config)), reference)

    # ... but in a run whose parameters no longer fit by position, refused with the reason and the way on.
    config.lora.rank = 2
    with pytest.raises(BackupError, match="from before backups named their tensors") as error:
        resumed(config)
    assert "lora.rank" in str(error.value)
