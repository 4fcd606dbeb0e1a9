"""Optimizer and learning-rate schedule from the training config."""

from __future__ import annotations

import math

import torch

from modules.config.validation import ConfigError


def create_optimizer(parameter_groups: list[dict], training) -> torch.optim.Optimizer:
    kwargs = dict(
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_epsilon,
        weight_decay=training.weight_decay,
    )
    if training.optimizer == "adamw":
        # foreach keeps the step cheap for the many small LoRA tensors.
        return torch.optim.AdamW(parameter_groups, foreach=True, **kwargs)
    if training.optimizer == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError(
                "training.optimizer: adamw_8bit needs bitsandbytes; install requirements-cuda.txt or "
                "requirements-rocm.txt, or choose adamw"
            ) from None
        return bnb.optim.AdamW8bit(parameter_groups, **kwargs)
    raise ConfigError(f"training.optimizer: unknown optimizer {training.optimizer!r}")


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ConfigError(f"training.lr_scheduler: unknown schedule {schedule!r}")


def create_lr_scheduler(optimizer: torch.optim.Optimizer, training) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, warmup_steps=training.warmup_steps, max_steps=training.max_steps, schedule=training.lr_scheduler
        ),
    )
