"""Learning-rate schedules: the multiplier of the peak learning rate at each optimizer step.

Every schedule starts with the same linear warmup (training.warmup_steps); the schedule proper runs over the
steps after it. The factor is a pure function of the step, so a resumed run (whose LambdaLR restores only
its step count) gets exactly the factors an uninterrupted run gets. Schedule-free optimizers need no schedule:
their factor is always 1 and the warmup is the optimizer's own (modules/trainer/optim/optimizer_registry.py).
"""

from __future__ import annotations

import math

import torch

from modules.config.validation import ConfigError

LR_SCHEDULES = ("constant", "linear", "cosine", "cosine_with_restarts", "polynomial")


def lr_factor(
    step: int,
    *,
    warmup_steps: int,
    max_steps: int,
    schedule: str,
    cycles: int = 1,
    power: float = 1.0,
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based).

    `min_factor` is where the decaying schedules end (linear, cosine, restarts and polynomial decay from 1 to it).
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        shape = 1.0 - progress
    elif schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "cosine_with_restarts":
        # `cycles` cosine decays of equal length, each starting again at the peak; the last ends at min_factor.
        if progress >= 1.0:
            shape = 0.0
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * ((cycles * progress) % 1.0)))
    elif schedule == "polynomial":
        shape = (1.0 - progress) ** power
    else:
        raise ConfigError(
            f"training.lr_scheduler: unknown schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    return min_factor + (1.0 - min_factor) * shape


def create_lr_scheduler(
    optimizer: torch.optim.Optimizer, training, schedule_free: bool = False
) -> torch.optim.lr_scheduler.LambdaLR:
    if schedule_free:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step,
            warmup_steps=training.warmup_steps,
            max_steps=training.max_steps,
            schedule=training.lr_scheduler,
            cycles=training.lr_cycles,
            power=training.lr_power,
            min_factor=training.lr_min_factor,
        ),
    )
