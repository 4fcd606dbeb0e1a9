"""BaseModelLoader: turns the config's model section into a loaded BaseModel."""

from __future__ import annotations

from abc import ABC, abstractmethod

from modules.base.model import BaseModel
from modules.util.errors import UserError


class ModelLoadError(UserError):
    """A model folder or file that cannot be used; the message names the path, what was found and the fix."""


class BaseModelLoader(ABC):
    @abstractmethod
    def load(self, config) -> BaseModel:
        """Load every part from local files (no network unless the config allows a hub download)."""

    def load_for_caching(self, config) -> BaseModel:
        """What building the cache needs (scripts/cache.py); a family whose loader can skip its denoisers
        overrides this. Default: the whole model."""
        return self.load(config)

    def caches_before_loading(self, config) -> bool:
        """True when `load_for_caching`'s model alone builds the cache and `load`'s model then needs none of its
        encoders: the trainer caches first, releases the encoders, and only then loads the denoisers, so they are
        never in memory together. Default False (`load_for_caching` is the whole model)."""
        return False
