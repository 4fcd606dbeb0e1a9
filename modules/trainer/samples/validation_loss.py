"""Validation loss at fixed noise levels on a held-out concept, one number per quantile.

The training loss is noisy because every step draws a new noise level; a loss measured at fixed sigmas
(timestep quantiles, e.g. 0.1 ... 0.9), with fixed noise, on fixed clips is comparable from step to step and
shows where (high or low noise) a run over- or under-fits. The held-out clips go through the plugin's own
data loader (same windows, buckets and cache as training), and the loss through the setup's own
`predict` / `calculate_loss` with `deterministic_timesteps`, so it is exactly the training objective.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from modules.module.eval_mode import eval_mode

log = logging.getLogger("wan_trainer")


def validation_config(config):
    """The training config with the validation concept as its only concept (everything else unchanged)."""
    from modules.config.train_config import ConceptConfig

    path = Path(config.sampling.validation_concept)
    if not path.is_dir():
        from modules.config.validation import ConfigError

        raise ConfigError(
            f"sampling.validation_concept: {str(path)!r} is not a folder. Fix: give a folder of held-out "
            "videos with .txt captions, or leave it empty"
        )
    validation = copy.deepcopy(config)
    validation.data.concepts = [ConceptConfig(path=str(path))]
    validation.data.concepts_file = ""
    validation.data.caption_dropout = 0.0  # the loss is measured on the real captions
    return validation


class ValidationLoss:
    def __init__(self, plugin, model, config, device: torch.device):
        self.quantiles = [float(q) for q in config.sampling.validation_quantiles]
        bad = [q for q in self.quantiles if not 0.0 < q < 1.0]
        if bad or not self.quantiles:
            from modules.config.validation import ConfigError

            raise ConfigError(
                f"sampling.validation_quantiles: {bad or 'empty'}; give noise levels between 0 and 1 "
                "(exclusive), e.g. [0.1, 0.5, 0.9]"
            )
        self.seed = config.sampling.validation_seed
        self.config = config
        self.data = plugin.data_loader()
        self.data.prepare(model, validation_config(config), device)

    def measure(self, model, setup, progress) -> dict[float, float]:
        """Mean loss over every validation batch at each quantile; the same noise for every quantile and step."""
        losses: dict[float, float] = {}
        with eval_mode(model):
            for sigma in self.quantiles:
                route = setup.validation_route(model, sigma)
                if not route.measure:
                    continue
                generator = torch.Generator().manual_seed(self.seed)
                total, count = 0.0, 0
                for batch in self.data.batches(0):
                    size = next(iter(batch.values())).shape[0]
                    prediction = setup.predict(
                        model,
                        batch,
                        self.config,
                        progress,
                        generator,
                        deterministic_timesteps=torch.full((size,), sigma),
                        expert=route.expert,
                    )
                    total += float(setup.calculate_loss(model, batch, prediction, self.config)) * size
                    count += size
                losses[sigma] = total / max(count, 1)
        return losses

    @staticmethod
    def tag(sigma: float) -> str:
        return f"loss/validation/sigma_{sigma:.2f}"
