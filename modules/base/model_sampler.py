"""BaseModelSampler: generates a sample (video) from a loaded, possibly trained, model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from modules.base.model import BaseModel


class BaseModelSampler(ABC):
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

        `extra` is recorded with the sample (the trainer passes the step). Implementations may set
        `last_result` to an object with `video` (uint8 frames), `fps` and `motion` for logging.
        """
