"""TrainingState: what the hooks (backups, samples, validation loss) may read and restore of a run.

The trainer builds it once, when training is set up; the hooks get it instead of the whole trainer, so what
they touch is written here and nowhere else. The objects are shared, not copied: a resumed backup writes into
them (weights, optimizer, scheduler, EMA, RNG, progress) and the loop sees the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.base.model import BaseModel
from modules.base.model_setup import BaseModelSetup, TrainProgress
from modules.trainer.distributed import Distributed


@dataclass
class TrainingState:
    config: Any  # TrainConfig
    model: BaseModel
    setup: BaseModelSetup
    progress: TrainProgress
    parameters: list[torch.nn.Parameter]  # every trained parameter, in optimizer order
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    generator: torch.Generator  # the run's CPU generator (noise, timesteps)
    ema: Any  # modules/trainer/state/ema.py's EMA, or None
    device: torch.device
    workspace: Path
    # This process among several (modules/trainer/distributed.py); the default is a single process.
    distributed: Distributed = field(default_factory=Distributed)
