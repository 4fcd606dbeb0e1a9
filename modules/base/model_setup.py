"""BaseModelSetup: what one training method (LoRA, full, embedding) does to a model on each step."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from modules.base.model import BaseModel


@dataclass(frozen=True)
class ValidationRoute:
    """Where the validation loss at one noise level goes (BaseModelSetup.validation_route)."""

    measure: bool = True  # False: the denoiser serving this level is not trained; its loss cannot change, skip it
    expert: str | None = None  # passed as predict(expert=...); None: the setup's own choice


@dataclass
class TrainProgress:
    """Where training stands; saved in backups so a resumed run continues at the same place."""

    global_step: int = 0
    epoch: int = 0
    epoch_step: int = 0


class BaseModelSetup(ABC):
    #: True when several processes shard this method's trained weights (FSDP; `sharding_plan` is not empty): the
    #: trainer then refuses, before loading, the settings a sharded run cannot serve (modules/trainer/distributed.py).
    shards_weights: bool = False

    @classmethod
    def check_config(cls, config) -> None:
        """Before anything loads (modules/trainer/guards/preflight.py): raise a UserError (ConfigError) naming a setting
        this method cannot run with, as far as the config alone shows (WAN: memory.blocks_to_swap against the
        block count, lora.layer_filter's syntax), so a run fails in seconds, not after loading and caching."""

    @abstractmethod
    def setup_model(self, model: BaseModel, config) -> None:
        """Freeze what is not trained, attach adapters, set dtypes and gradient checkpointing."""

    @abstractmethod
    def parameter_groups(self, model: BaseModel, config) -> list[dict]:
        """Trainable parameters as optimizer parameter groups (each with its learning rate)."""

    @abstractmethod
    def setup_train_device(self, model: BaseModel, config, device: torch.device) -> None:
        """Place the parts for training: denoisers on the accelerator, encoders where caching left them."""

    @abstractmethod
    def predict(
        self,
        model: BaseModel,
        batch: dict,
        config,
        progress: TrainProgress,
        generator: torch.Generator,
        deterministic_timesteps: torch.Tensor | None = None,
        expert: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """One forward pass on a batch; returns at least `predicted` and `target`, plus what `calculate_loss`
        reads (WAN: `loss_mask`, 0 where a clean conditioning frame is not trained on, and `sigma`, `expert`).

        `deterministic_timesteps` (sigmas in [0, 1], one per sample) replaces the random draw, so that
        loss can be measured at fixed noise levels (overfit checks, validation). `expert` names the denoiser
        to run (a name `validation_route` gave); None: the setup routes the step itself.
        """

    @abstractmethod
    def calculate_loss(self, model: BaseModel, batch: dict, prediction: dict, config) -> torch.Tensor:
        """Scalar loss from `predict`'s output."""

    def sharding_plan(self, model: BaseModel) -> list[tuple[torch.nn.Module, list[torch.nn.Module]]]:
        """For several processes: the trained modules to shard (FSDP), each with the blocks to shard one by one.

        Empty (the default): the method trains data parallel, each process holding the whole model
        (modules/trainer/distributed.py). Full fine-tuning returns each trained expert with its blocks.
        """
        return []

    def validation_route(self, model: BaseModel, sigma: float) -> ValidationRoute:
        """Which denoiser the validation loss at noise level `sigma` is measured on, or that it is skipped.

        Models with several denoisers (WAN A14B's noise-level experts) override this; one denoiser: the default.
        """
        return ValidationRoute()

    def after_optimizer_step(self, model: BaseModel, config) -> None:
        """After each optimizer step, and after a resume put a backup's weights in: bring copies of the trained
        weights up to date (WAN's embedding training writes its vectors into the text encoder's rows here, so
        samples and saves see them). Default: nothing."""

    @abstractmethod
    def trainable_state_dict(self, model: BaseModel) -> dict[str, torch.Tensor]:
        """The trained weights only, under stable names, as the live tensors (sharing storage with the trained
        parameters): backups store them by these names (modules/trainer/state/resume.py), so a resume does not depend
        on the order of the parameters and a backup's weights are readable by name."""
