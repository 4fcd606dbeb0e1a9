"""Backups: written by steps, by time and before the save, pruned to a rolling count, holding the whole
training state; a bad or partial backup is skipped with a message naming it and the previous good one resumes.

One real 5-step LoRA run on the tiny TI2V-5B model (EMA on) writes the backups; the rest reads and damages
them. The clock is not faked: the test moves the controller's "last backup" time an hour back, which is
what an hour of training would leave there. Exact resume and SIGKILL are tests/test_resume.py and
tests/test_backup_crash.py.
"""

import dataclasses
import logging

import pytest
import torch

from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.backups import BackupError, backup_folders, check_backup, read_backup
from modules.trainer.state.parameter_names import parameter_names
from tests.test_ema import lora_config


def backup_steps(root) -> list[int]:
    return [check_backup(folder)["global_step"] for folder in backup_folders(root)]


def resumed_trainer(config) -> GenericTrainer:
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()  # resumes here when backup.continue_last_backup is on
    return trainer


def test_backups_on_schedule_rolling_complete_and_falling_back(tiny_model_dir, tmp_path, caplog):
    config = lora_config(tiny_model_dir("TI2V-5B"), tmp_path)  # 5 steps, EMA on
    backup = config.backup
    backup.every_steps, backup.every_minutes, backup.before_save, backup.rolling_count = 2, 60.0, True, 3
    trainer = GenericTrainer(config)

    def an_hour_passes_before_step_3_backup(progress, loss):
        if progress.global_step == 3:  # step callbacks run just before the step's backup check
            trainer.backups.last_time -= 3600

    trainer.step_callbacks.append(an_hour_passes_before_step_3_backup)
    with caplog.at_level(logging.INFO, logger="wan_trainer.backups"):
        trainer.train()
    root = tmp_path / "run" / "backups"
    written = [m for m in caplog.messages if "backup (" in m]
    reasons = [m.split("(")[1].split(")")[0] for m in written]
    # Step 2 and 4 by steps, step 3 by time, step 5 before the final save; the rolling count keeps 3.
    assert [int(m.split()[1].rstrip(":")) for m in written] == [2, 3, 4, 5]
    assert reasons == ["every 2 steps", "every 60 minutes", "every 2 steps", "before saving"]
    assert backup_steps(root) == [5, 4, 3]
    assert not [p for p in root.iterdir() if not p.name.startswith("backup-")], "temp folders left behind"

    # The newest holds the whole state as the trainer had it before the save: live weights (not the EMA),
    # the EMA, optimizer moments per weight, the scheduler, every RNG and the position in the data order.
    newest = read_backup(backup_folders(root)[0])
    assert set(newest.tensors) == {"weights", "optimizer", "rng", "ema"}
    weights, names = newest.tensors["weights"], parameter_names(trainer.setup, trainer.model, trainer.parameters)
    assert set(weights) == set(trainer.setup.trainable_state_dict(trainer.model))  # named as the setup names them
    assert all(torch.equal(weights[n], p.detach()) for n, p in zip(names, trainer.parameters))
    assert all(torch.equal(newest.tensors["ema"][n], s) for n, s in zip(names, trainer.ema.shadow))
    assert not all(torch.equal(weights[n], s) for n, s in zip(names, trainer.ema.shadow))
    optimizer = trainer.optimizer.state_dict()["state"]
    assert all(
        torch.equal(newest.tensors["optimizer"][f"{i}.exp_avg_sq"], optimizer[i]["exp_avg_sq"]) for i in optimizer
    )
    assert newest.state["lr_scheduler"] == trainer.lr_scheduler.state_dict()
    assert (
        newest.state["progress"] == dataclasses.asdict(trainer.progress)
        and newest.state["progress"]["global_step"] == 5
    )
    assert torch.equal(newest.tensors["rng"]["generator"], trainer.generator.get_state())
    assert {"python", "numpy"} <= set(newest.state["rng"]) and "torch_cpu" in newest.tensors["rng"]
    assert newest.state["ema"] == {"decay": config.ema.decay, "update_interval": config.ema.update_interval}

    # A truncated newest backup: skipped with a warning naming the file; the one before resumes.
    step5, step4, step3 = backup_folders(root)
    weights_file = step5 / "weights.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-100])
    config.backup.continue_last_backup = True
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wan_trainer.backups"):
        assert resumed_trainer(config).progress.global_step == 4
    assert any(str(weights_file) in m and "truncated" in m and "falling back" in m for m in caplog.messages), (
        caplog.messages
    )
    assert any(f"resumed from {step4} at step 4" in m for m in caplog.messages)

    # A backup whose marker never got written (a run killed before the rename would leave a temp folder,
    # but a person may have copied a folder half-way): incomplete, skipped.
    (step4 / "backup_complete.json").unlink()
    assert resumed_trainer(config).progress.global_step == 3

    # A run whose trainable weights differ (another rank) may not use the last good one either: refused,
    # and with none left the error lists every folder's reason and says how to go on.
    config.lora.rank = 2
    with pytest.raises(BackupError) as error:
        resumed_trainer(config)
    message = str(error.value)
    assert "backup.continue_last_backup" in message and "lora.rank" in message
    assert str(step5) in message and str(step4) in message and str(step3) in message
