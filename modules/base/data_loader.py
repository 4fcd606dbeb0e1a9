"""BaseDataLoader: builds the cached dataset a model family trains on, and serves its batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch

from modules.base.model import BaseModel


class BaseDataLoader(ABC):
    #: This process's number and the number of processes; each step's batch is split between them.
    process_index: int = 0
    num_processes: int = 1

    def share_between(self, process_index: int, num_processes: int) -> None:
        """Called before `prepare` when several processes train: `batches` must then yield this process's
        share of every step's batch, the same bucket (shapes) on every process. A batch may carry
        `share` = (start, stop, total): its samples' positions in the whole step's batch, so that random draws
        made for the whole batch can be sliced and equal those of one process with the whole batch."""
        self.process_index, self.num_processes = process_index, num_processes

    @abstractmethod
    def prepare(self, model: BaseModel, config, device: torch.device, release_encoders: bool = True) -> None:
        """Probe, plan and cache everything training will read (the only step that decodes media).

        Encoders run on `device` while caching and are released afterwards, unless `release_encoders` is false (the
        caller caches more with them, then lets a last `prepare` release them).
        """

    def attach(self, model: BaseModel, config, device: torch.device) -> None:
        """After `prepare` ran with the caching model (`BaseModelLoader.caches_before_loading`): hand what caching
        produced to the model that trains, encoding nothing. Default: prepare again, which finds every entry."""
        self.prepare(model, config, device)

    def check_sources(self, config) -> None:
        """Checks of the training data that need no model (folders exist, captions where required), run before
        the model loads; raise with a message naming the setting and the fix. Default: nothing to check."""

    @abstractmethod
    def batches(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        """Batches of cached tensors for one epoch, in a seeded order; `skip` resumes mid-epoch."""

    @abstractmethod
    def batches_per_epoch(self) -> int:
        """How many batches `batches` yields for one epoch."""
