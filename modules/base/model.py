"""BaseModel: the loaded components of one model family, and how to move them between devices."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class BaseModel(ABC):
    """A bag of the model's parts (encoders, denoiser(s), scheduler) plus the identity of where it came from.

    Plugins subclass it with named attributes. The trainer only uses the methods below, so it never
    needs to know which parts a model family has.
    """

    #: A string that changes whenever the weights that produce cached tensors change (used in cache keys).
    source_identity: str = ""

    @abstractmethod
    def encoders_to(self, device: torch.device) -> None:
        """Move the parts used only while caching (VAE, text encoder) to `device`."""

    @abstractmethod
    def eval(self) -> None:
        """Put every part in eval mode (the setup switches trained parts back to train mode)."""
