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
    #: What was merged into the loaded weights (e.g. LoRAs); empty for a model as published. A backup written on
    #: another merged base cannot resume (modules/trainer/state/resume.py).
    base_weights_identity: str = ""

    @abstractmethod
    def encoders_to(self, device: torch.device) -> None:
        """Move the parts used only while caching (VAE, text encoder) to `device`."""

    def memory_facts(self):
        """The memory planner's facts of this loaded model (modules/memory/facts.py ModelFacts), or None when the
        plugin has none; the planner then reads them from the config's sources."""
        return None

    @abstractmethod
    def eval(self) -> None:
        """Put every part in eval mode (the setup switches trained parts back to train mode)."""
