"""BaseModelSampler: generates a sample (video) from a loaded, possibly trained, model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from modules.base.model import BaseModel


class SampleOutput(Protocol):
    """What the trainer reads of the last sample, for TensorBoard."""

    video: np.ndarray | None  # (F, H, W, 3) uint8 frames as written; the trainer sets None once logged
    fps: float


class BaseModelSampler(ABC):
    # The last sample written by `sample` (None before the first, or when it failed); replaced by each call.
    last_result: SampleOutput | None = None

    @classmethod
    def for_training(cls, config, device: torch.device) -> BaseModelSampler:
        """The sampler the trainer uses, set up from the training config (format, quality, device, ...)."""
        return cls()

    def preflight(self) -> str:
        """Check what writing a sample needs (e.g. a video encoder) and raise a clear error if it is missing."""
        return ""

    @abstractmethod
    def sample(self, model: BaseModel, sample_config, destination: Path, extra: dict | None = None) -> Path:
        """Generate one sample as described by `sample_config` and write it to `destination`.

        `extra` is recorded with the sample (the trainer passes the step). Implementations set
        `last_result` (a SampleOutput) so the trainer can log the frames.
        """
