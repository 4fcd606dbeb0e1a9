"""BaseModelSaver: writes what was trained in the format the user asked for, atomically."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from modules.base.model import BaseModel


class BaseModelSaver(ABC):
    @abstractmethod
    def save(self, model: BaseModel, config, destination: Path) -> list[Path]:
        """Write the trained result; returns the files written (a run with two experts writes two)."""
