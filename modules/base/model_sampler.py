"""BaseModelSampler: generates a sample (video) from a loaded, possibly trained, model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from modules.base.model import BaseModel


class BaseModelSampler(ABC):
    @abstractmethod
    def sample(self, model: BaseModel, sample_config, destination: Path) -> Path:
        """Generate one sample as described by `sample_config` and write it to `destination`."""
