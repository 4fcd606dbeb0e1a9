"""What a backup holds for the trainer, putting it back, and when backups are written.

A backup holds the trainable weights, the optimizer and LR-scheduler state, the EMA, every RNG state and
the position in the data order (TrainProgress: global step, epoch, batches done in that epoch). A run
resumed from it draws the same batches, noise and timesteps as an uninterrupted run, so the weights end
bit-identical (tests/test_resume.py). Tensors go to safetensors and everything else to JSON: nothing is
pickled.

With several processes every process gathers the state (sharded FSDP tensors are gathered whole, so the
files are those one process writes) and the main one writes it; every process reads the same backup when
resuming. The random states are the main process's: every process draws the same numbers (each draws for
the whole batch and keeps its rows), so they are the same on all. A backup resumes only with the number of
processes that wrote it (docs/multi_gpu.md).

A run deletes only the backups it wrote (the rolling count counts those). A run that starts from step 0 in a
workspace whose newest backup belongs to a run that did not finish (stopped, killed, crashed) is refused before the
model loads, naming backup.continue_last_backup and the command that resumes: rerunning the command from the shell
history must not quietly start over beside a resumable run (`check_fresh_start`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from modules.trainer.distributed import Distributed, copy_into, shard_optimizer_state
from modules.trainer.state.backups import (
    BackupContents,
    BackupError,
    backup_folders,
    newest_complete_backup,
    newest_usable_backup,
    prune_own_backups,
    read_state,
    remove_stale_temp_folders,
    write_backup,
)
from modules.trainer.state.parameter_names import legacy_names, parameter_names, reorder_optimizer_state
from modules.trainer.state.rng_state import capture_rng_state, restore_rng_state
from modules.trainer.state.training_state import TrainingState

log = logging.getLogger("wan_trainer.backups")


def processes_of(run_state) -> Distributed:
    """The run's processes; one process for a state built without them (a caller other than the trainer)."""
    return getattr(run_state, "distributed", None) or Distributed()


def base_weights_of(run_state) -> str:
    """What was merged into the base weights (BaseModel.base_weights_identity); "" for a state built without a model
    (a caller other than the trainer) or a model as published."""
    return getattr(getattr(run_state, "model", None), "base_weights_identity", "")


# ---- training state <-> backup contents ---------------------------------------------------------------------
def run_contents(run_state: TrainingState) -> BackupContents:
    optimizer_json, optimizer_tensors = _split_optimizer_state(run_state.optimizer.state_dict())
    rng_json, rng_tensors = capture_rng_state(run_state.generator)
    config = run_state.config
    names = _names(run_state)
    state = {
        "num_processes": processes_of(run_state).world_size,
        "model_type": config.model_type,
        "training_method": config.training_method,
        "base_weights": base_weights_of(run_state),
        "progress": dataclasses.asdict(run_state.progress),
        "max_steps": config.training.max_steps,  # a backup below it is of a run that did not finish
        # In the optimizer's order: the optimizer state's parameter numbers are positions in this list.
        "parameters": [
            {"name": name, "shape": list(p.shape), "dtype": str(p.dtype)}
            for name, p in zip(names, run_state.parameters)
        ],
        "optimizer": optimizer_json,
        "lr_scheduler": run_state.lr_scheduler.state_dict(),
        "rng": rng_json,
        "ema": None
        if run_state.ema is None
        else {"decay": run_state.ema.decay, "update_interval": run_state.ema.update_interval},
    }
    _check_json(state)
    tensors = {
        "weights": {name: p.detach() for name, p in zip(names, run_state.parameters)},
        "optimizer": optimizer_tensors,
        "rng": rng_tensors,
    }
    if run_state.ema is not None:
        averages = run_state.ema.state_tensors()
        tensors["ema"] = {name: averages[f"ema.{i}"] for i, name in enumerate(names)}
    tensors = {stem: processes_of(run_state).full_tensors(part) for stem, part in tensors.items()}
    return BackupContents(state=state, tensors=tensors)


def check_contents_fit(run_state: TrainingState, contents: BackupContents, folder: Path) -> None:
    """Raise BackupError unless the backup was written by a run with the same trainable parameters."""
    state, config = contents.state, run_state.config
    if (state.get("model_type"), state.get("training_method")) != (config.model_type, config.training_method):
        raise BackupError(
            f"{folder}: written for {state.get('model_type')}/{state.get('training_method')}, "
            f"this run trains {config.model_type}/{config.training_method}"
        )
    if state.get("base_weights", "") != base_weights_of(run_state):
        # The trained weights are an update on top of that base: continuing them on another is another run.
        raise BackupError(
            f"{folder}: written on a base with other LoRAs merged into it (model.base_loras: files, their contents "
            "or multipliers differ). Resume with the model.base_loras the run started with, or start a new run"
        )
    written_by, running = state.get("num_processes", 1), processes_of(run_state).world_size
    if written_by != running:
        # Each step's batch is split between the processes: another count changes which samples a step holds
        # and where in the epoch the run stands, so the continuation would not be the run that was backed up.
        raise BackupError(
            f"{folder}: written by a run with {written_by} process(es), this run has {running}; resume with "
            f"{written_by} (scripts/train.py --num-processes {written_by}), or start a new run from the saved model"
        )
    saved = state.get("parameters") or []
    names = _names(run_state)
    if all("name" in entry for entry in saved):
        expected = {n: {"shape": list(p.shape), "dtype": str(p.dtype)} for n, p in zip(names, run_state.parameters)}
        found = {entry["name"]: {"shape": entry["shape"], "dtype": entry["dtype"]} for entry in saved}
        if found != expected:
            differ = sorted(set(found) ^ set(expected)) or sorted(n for n in found if found[n] != expected[n])
            raise BackupError(
                f"{folder}: its trainable parameters ({len(found)} tensors) differ from this run's ({len(expected)}) "
                f"in name, shape or dtype (e.g. {differ[:3]}); were lora.rank, lora.layer_filter, experts.train or "
                "a dtype changed? Resume with the original settings"
            )
        stored = names
    else:  # written before backups named their tensors: by position, as it was written (parameter_names.py)
        expected = [{"shape": list(p.shape), "dtype": str(p.dtype)} for p in run_state.parameters]
        if [{"shape": e.get("shape"), "dtype": e.get("dtype")} for e in saved] != expected:
            raise BackupError(
                f"{folder}: a backup from before backups named their tensors, whose trainable parameters "
                f"({len(saved)} tensors) differ in number, shape or dtype from this run's ({len(expected)}), so its "
                "tensors cannot be matched by position; were lora.rank, lora.layer_filter, experts.train or a dtype "
                "changed? Resume with the original settings, or start a new run"
            )
        stored = legacy_names(len(expected))
    weights = contents.tensors.get("weights", {})
    for key, parameter in zip(stored, run_state.parameters):
        tensor = weights.get(key)
        if tensor is None or tensor.shape != parameter.shape or tensor.dtype != parameter.dtype:
            raise BackupError(f"{folder}: weights.safetensors lacks {key} or holds it with another shape/dtype")
    for key in ("optimizer", "rng"):
        if key not in contents.tensors:
            raise BackupError(f"{folder}: {key}.safetensors is missing")
    if run_state.ema is not None and state.get("ema") is not None and "ema" not in contents.tensors:
        raise BackupError(f"{folder}: ema.safetensors is missing")


def apply_contents(run_state: TrainingState, contents: BackupContents) -> None:
    """Put a checked backup into the run's state (weights, optimizer, scheduler, EMA, RNG, progress)."""
    state = contents.state
    names = _names(run_state)
    saved = [entry.get("name") for entry in state["parameters"]]
    if None in saved:  # a backup from before names: positions are this run's (check_contents_fit compared them)
        stored, saved_index = legacy_names(len(names)), list(range(len(names)))
    else:
        position = {name: index for index, name in enumerate(saved)}
        stored, saved_index = names, [position[name] for name in names]
    with torch.no_grad():
        for key, parameter in zip(stored, run_state.parameters):
            copy_into(parameter, contents.tensors["weights"][key])
    optimizer_state = _join_optimizer_state(
        state["optimizer"], contents.tensors["optimizer"], run_state.optimizer.state_dict()
    )
    optimizer_state = reorder_optimizer_state(optimizer_state, saved_index)
    run_state.optimizer.load_state_dict(shard_optimizer_state(optimizer_state, run_state.parameters))
    run_state.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if run_state.ema is not None:
        if state.get("ema") is None:
            log.warning("the backup has no EMA (ema.enabled was off); the EMA starts from the resumed weights")
            run_state.ema.load_state_tensors({f"ema.{i}": p.detach() for i, p in enumerate(run_state.parameters)})
        else:
            averages = contents.tensors["ema"]
            keys = [f"ema.{i}" for i in range(len(names))] if stored is not names else names
            run_state.ema.load_state_tensors({f"ema.{i}": averages[key] for i, key in enumerate(keys)})
    # Last: nothing after this may draw random numbers before the first resumed step.
    restore_rng_state(state["rng"], contents.tensors["rng"], run_state.generator)
    for name, value in state["progress"].items():
        setattr(run_state.progress, name, value)


def _names(run_state) -> list[str]:
    """Each trained parameter's name (BaseModelSetup.trainable_state_dict); a walk over the trained weights, small
    next to writing or reading a backup. A state built without a setup (a caller other than the trainer) has no
    names: its tensors are numbered."""
    setup = getattr(run_state, "setup", None)
    if setup is None:
        return legacy_names(len(run_state.parameters))
    return parameter_names(setup, run_state.model, run_state.parameters)


# Separates a nested state entry's key from its inner key in tensor names ("0.<key>/<inner>").
_NESTED = "/"


def _split_optimizer_state(state_dict: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """torch's optimizer state_dict as (JSON, tensors named '<param index>.<key>')."""
    as_json: dict = {"state": {}, "param_groups": state_dict["param_groups"]}
    tensors = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value
            elif isinstance(value, dict):  # bitsandbytes keeps its quantisation state as a dict of tensors
                for inner, item in value.items():
                    if torch.is_tensor(item):
                        # Cloned: its quantisation maps are one tensor shared by every parameter's entry, and
                        # safetensors refuses shared memory.
                        tensors[f"{index}.{key}{_NESTED}{inner}"] = item.clone()
                    else:
                        as_json["state"].setdefault(str(index), {}).setdefault(key, {})[inner] = item
            else:
                as_json["state"].setdefault(str(index), {})[key] = value
    return as_json, tensors


def _join_optimizer_state(as_json: dict, tensors: dict[str, torch.Tensor], template: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        if _NESTED in key:
            key, inner = key.split(_NESTED, 1)
            state.setdefault(int(index), {}).setdefault(key, {})[inner] = value
        else:
            state.setdefault(int(index), {})[key] = value
    for index, entry in as_json["state"].items():
        target = state.setdefault(int(index), {})
        for key, value in entry.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key].update(value)
            else:
                target[key] = value
    groups = as_json["param_groups"]
    if len(groups) != len(template["param_groups"]):
        raise BackupError(
            f"the backup's optimizer has {len(groups)} parameter groups, this run's has {len(template['param_groups'])}"
        )
    # JSON turned tuples (AdamW's betas) into lists; give them back the type the optimizer itself uses.
    for group, fresh in zip(groups, template["param_groups"]):
        for key, value in fresh.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
    return {"state": state, "param_groups": groups}


def _check_json(state: dict) -> None:
    try:
        json.dumps(state, allow_nan=True)
    except TypeError as error:
        raise BackupError(
            f"the training state holds a value backups cannot store as JSON ({error}); "
            "this optimizer or scheduler is not supported by backups yet"
        ) from None


# ---- a fresh start beside a stopped run ---------------------------------------------------------------------
class UnfinishedRunError(BackupError):
    """A start from step 0 in a workspace holding a resumable backup; scripts/train.py adds the resume command."""

    resume_arguments = ("--config-value", "backup.continue_last_backup=true")


def check_fresh_start(config) -> None:
    """Before the model loads: refuse a start from step 0 when the workspace's newest backup is of a run that did
    not finish (its step is below the max_steps it was written with); a finished run's backups are kept and the
    new run starts beside them."""
    if config.backup.continue_last_backup:
        return
    root = Path(config.output.workspace_dir) / "backups"
    newest = newest_complete_backup(root)
    if newest is None:
        return
    try:
        state = read_state(newest)
    except BackupError:
        return  # not usable for a resume either; nothing to protect from a mix-up
    step = state.get("progress", {}).get("global_step", 0)
    planned = state.get("max_steps")
    if planned is not None and step >= planned:
        count = len(backup_folders(root))
        log.info(
            "%s holds %d backup(s) of an earlier, finished run; they are kept (this run starts from step 0)",
            root,
            count,
        )
        return
    of = f" of {planned}" if planned is not None else ""
    raise UnfinishedRunError(
        f"output.workspace_dir: {root} holds the backup {newest.name} of a run that stopped at step {step}{of} "
        "before it finished, and backup.continue_last_backup is false, so this run would start again from step 0. "
        "Expected: resume that run, or start over somewhere its backups are not. "
        "Fix: resume it with backup.continue_last_backup=true (the command below), or to start over set "
        f"output.workspace_dir to another folder or move {root} aside (its backups are never deleted by a new run)."
    )


# ---- when, and resuming --------------------------------------------------------------------------------
class BackupController:
    """Writes backups on schedule (steps, minutes), before saves, keeps a rolling count, and resumes."""

    def __init__(self, run_state: TrainingState):
        self.run_state = run_state
        self.settings = run_state.config.backup
        self.root = Path(run_state.config.output.workspace_dir) / "backups"
        self.last_time = time.monotonic()
        self.last_step: int | None = None
        self.written: list[Path] = []  # this run's backups, oldest first: the only ones the rolling count deletes
        self.main = processes_of(run_state).is_main  # with several processes only the main one writes backups
        if self.main:
            remove_stale_temp_folders(self.root)

    def resume_if_configured(self) -> Path | None:
        if not self.settings.continue_last_backup:
            return None
        try:
            found = newest_usable_backup(
                self.root, lambda contents, folder: check_contents_fit(self.run_state, contents, folder)
            )
        except BackupError as error:
            raise BackupError(
                f"backup.continue_last_backup: {error}\nFix or delete them, or set "
                "backup.continue_last_backup to false to start from step 0."
            ) from None
        if found is None:
            log.info("backup.continue_last_backup: no backup in %s yet; starting from step 0", self.root)
            return None
        folder, contents = found
        apply_contents(self.run_state, contents)
        self.last_step = self.run_state.progress.global_step
        progress = self.run_state.progress
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d of that epoch)",
            folder,
            progress.global_step,
            progress.epoch,
            progress.epoch_step,
        )
        return folder

    def on_step(self) -> Path | None:
        step = self.run_state.progress.global_step
        every_steps, every_minutes = self.settings.every_steps, self.settings.every_minutes
        if every_steps and step % every_steps == 0:
            return self.write(f"every {every_steps} steps")
        due = bool(every_minutes) and time.monotonic() - self.last_time >= every_minutes * 60
        if every_minutes and processes_of(self.run_state).main_decides(due):  # clocks differ between processes
            return self.write(f"every {every_minutes:g} minutes")
        return None

    def before_save(self) -> Path | None:
        return self.write("before saving") if self.settings.before_save else None

    def write(self, reason: str) -> Path | None:
        step = self.run_state.progress.global_step
        if step == self.last_step:
            return None  # this exact state is already backed up (or was resumed from)
        contents = run_contents(self.run_state)  # every process: gathering sharded tensors is collective
        self.last_step, self.last_time = step, time.monotonic()
        if not self.main:
            return None
        folder = write_backup(self.root, contents, step)
        self.written.append(folder)
        removed = prune_own_backups(self.written, self.settings.rolling_count)
        log.info(
            "step %d: backup (%s) written to %s%s",
            step,
            reason,
            folder,
            f"; removed {len(removed)} older" if removed else "",
        )
        return folder
