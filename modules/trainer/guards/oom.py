"""Running out of GPU memory in a training step: keep what was trained, say why, stop with its own exit code (4).

`StepGuard` remembers the state at the end of the last completed optimizer step: the RNG states and the position
in the data (weights, optimizer, LR schedule and EMA change only inside the optimizer step, so they are still that
step's). When `torch.OutOfMemoryError` (a RuntimeError) escapes the forward/backward pass, `handle` puts the RNG
and position back, drops the partial gradients, writes a backup of exactly that state (so a resume is
bit-identical to a run that never failed: tests/test_oom.py) and returns an OutOfMemoryStop whose message says
what was running, the measured peak and what the memory planner recommends for this GPU.

For tests, WAN_TRAINER_TEST_OOM_AT_STEP=N raises the same exception type inside step N's forward/backward pass.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import torch

from modules.trainer.state.rng_state import capture_rng_state, restore_rng_state
from modules.util.errors import UserError

log = logging.getLogger("wan_trainer.oom")

EXIT_OUT_OF_MEMORY = 4  # scripts/train.py's exit status after an out-of-memory stop (2: errors, 3: stopped)
TEST_OOM_ENV = "WAN_TRAINER_TEST_OOM_AT_STEP"


class OutOfMemoryStop(UserError, RuntimeError):
    """Training stopped because the GPU ran out of memory; the message says what was saved and what to change."""

    exit_code = EXIT_OUT_OF_MEMORY


def gpu_memory_gib(device: torch.device) -> float | None:
    """The GPU's size (or WAN_TRAINER_PRETEND_GPU_GIB's); None without a GPU. Never raises: advice must not."""
    from modules.util.device import gpu_capacity_gib

    try:
        return gpu_capacity_gib(device)
    except Exception as error:  # noqa: BLE001 - a bad environment variable is logged, the stop still happens
        log.warning("%s", error)
        return None


def measured_peak(device: torch.device) -> str:
    if device.type != "cuda":
        return "not measured (no CUDA/ROCm device)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB allocated at most"


def planner_advice(config, device: torch.device, model=None) -> str:
    """The planner's verdict for this GPU, with the loaded model's facts where `model` is given."""
    try:
        from modules.planning import model_facts, plan_memory

        vram = gpu_memory_gib(device)
        return plan_memory(config, vram, model_facts(config, model)).verdict(vram)
    except Exception as error:  # noqa: BLE001 - advice must not hide the out-of-memory error
        return f"no plan ({error})"


class StepGuard:
    def __init__(self, trainer):
        self.trainer = trainer
        self.inject_at = int(os.environ.get(TEST_OOM_ENV) or 0)
        self.what = "training"
        self.mark()

    def mark(self) -> None:
        """Call when a step (or an epoch) is complete: this is the state an out-of-memory stop backs up."""
        self.rng = capture_rng_state(self.trainer.generator)
        self.progress = dataclasses.replace(self.trainer.progress)

    def running(self, batch: dict) -> None:
        """Call at the start of a forward/backward pass: names the work in the message."""
        step = self.trainer.progress.global_step + 1
        shape = tuple(batch["latents"].shape) if "latents" in batch else None
        latents = f" on latents of shape {shape} (batch, channels, frames, height, width)" if shape else ""
        self.what = f"the forward and backward pass of step {step}{latents}"

    def maybe_inject(self) -> None:
        if self.inject_at and self.trainer.progress.global_step + 1 == self.inject_at:
            raise torch.OutOfMemoryError(f"out of memory injected at step {self.inject_at} by {TEST_OOM_ENV}")

    def handle(self, error: BaseException) -> OutOfMemoryStop:
        trainer = self.trainer
        trainer.optimizer.zero_grad(set_to_none=True)
        restore_rng_state(*self.rng, trainer.generator)
        for field in dataclasses.fields(self.progress):
            setattr(trainer.progress, field.name, getattr(self.progress, field.name))
        peak = measured_peak(trainer.device)
        if trainer.device.type == "cuda":
            torch.cuda.empty_cache()  # room for the backup's copies
        step = trainer.progress.global_step
        try:
            folder = trainer.backups.write("out of memory")
            saved = (
                f"a backup of step {step} (the last completed step) is in {folder}"
                if folder is not None
                else f"step {step} (the last completed step) was already backed up in {trainer.backups.root}"
            )
        except Exception as backup_error:  # noqa: BLE001 - report both problems
            saved = f"the backup of step {step} could not be written ({backup_error})"
        message = (
            f"out of GPU memory during {self.what}: {error}\n"
            f"  measured peak: {peak}\n"
            f"  saved: {saved}; resume with backup.continue_last_backup=true\n"
            f"  memory planner: {planner_advice(trainer.config, trainer.device, trainer.model)}"
        )
        log.error(message)
        return OutOfMemoryStop(message)


def sample_oom_note(config, device: torch.device, model=None) -> str:
    """What a sample that ran out of memory adds to its log line."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    advice = planner_advice(config, device, model)
    return f"out of memory while sampling; training goes on. Memory planner: {advice}"
