"""Optimizer and learning-rate schedule from the training config (the trainer's one import for both).

The optimizers live in optimizer_registry.py, the schedules in lr_schedules.py.
"""

from __future__ import annotations

import torch

from modules.trainer.optim.lr_schedules import LR_SCHEDULES, lr_factor  # noqa: F401
from modules.trainer.optim.lr_schedules import create_lr_scheduler as _create_lr_scheduler
from modules.trainer.optim.optimizer_registry import create_optimizer, is_schedule_free  # noqa: F401


def create_lr_scheduler(optimizer: torch.optim.Optimizer, training) -> torch.optim.lr_scheduler.LambdaLR:
    return _create_lr_scheduler(optimizer, training, schedule_free=is_schedule_free(training))
