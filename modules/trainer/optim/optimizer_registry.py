"""Every optimizer the trainer offers, built from training.* and its own section (modules/config/optimizer_config.py).

Each entry is a function of (parameter groups, training config) that imports its library only when chosen, so a
missing optional package is a clear error for the run that asked for it and nothing else. Per-group learning
rates (one per A14B expert) are kept: every optimizer here reads `lr` from each group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from modules.config.optimizer_config import SCHEDULE_FREE, check_optimizer_settings
from modules.config.validation import ConfigError
from modules.trainer.optim.per_group_optimizer import PerGroupOptimizer


def _need(package: str, optimizer: str, fix: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(f"training.optimizer: {optimizer} needs the {package} package ({error}); {fix}") from None


def _bitsandbytes(optimizer: str):
    return _need(
        "bitsandbytes",
        optimizer,
        "install requirements-cuda.txt or requirements-rocm.txt, or choose adamw",
    )


def _adam_kwargs(training) -> dict:
    return dict(
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_epsilon,
        weight_decay=training.weight_decay,
    )


def _adamw(groups, training):
    # foreach keeps the step cheap for the many small LoRA tensors.
    return torch.optim.AdamW(groups, foreach=True, **_adam_kwargs(training))


def _adamw_8bit(groups, training):
    return _bitsandbytes("adamw_8bit").optim.AdamW8bit(groups, **_adam_kwargs(training))


def _paged_adamw(groups, training):
    return _bitsandbytes("paged_adamw").optim.PagedAdamW(groups, **_adam_kwargs(training))


def _paged_adamw_8bit(groups, training):
    return _bitsandbytes("paged_adamw_8bit").optim.PagedAdamW8bit(groups, **_adam_kwargs(training))


def _prodigy(groups, training):
    if len(groups) > 1:  # one Prodigy per expert: it refuses groups with different learning rates
        return PerGroupOptimizer(groups, lambda group: _prodigy(group, training))
    settings = training.prodigy
    prodigyopt = _need("prodigyopt", "prodigy", "pip install -r requirements-global.txt")
    return prodigyopt.Prodigy(
        groups,
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_epsilon,
        weight_decay=training.weight_decay,
        decouple=True,
        d0=settings.d0,
        d_coef=settings.d_coef,
        growth_rate=settings.growth_rate or math.inf,
        use_bias_correction=settings.use_bias_correction,
        safeguard_warmup=settings.safeguard_warmup,
    )


def _adafactor(groups, training):
    settings = training.adafactor
    optimization = _need("transformers.optimization", "adafactor", "pip install -r requirements-global.txt")
    return optimization.Adafactor(
        groups,
        lr=training.learning_rate,
        eps=(settings.eps1, settings.eps2),
        clip_threshold=settings.clip_threshold,
        decay_rate=settings.decay_rate,
        beta1=settings.beta1 or None,
        weight_decay=training.weight_decay,
        scale_parameter=settings.scale_parameter,
        # Our schedule drives the learning rate; Adafactor's own relative step would ignore it.
        relative_step=False,
        warmup_init=False,
    )


def _came(groups, training):
    settings = training.came
    library = _need("pytorch_optimizer", "came", "pip install -r requirements-global.txt")
    return library.CAME(
        groups,
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2, settings.beta3),
        weight_decay=training.weight_decay,
        weight_decouple=True,
        clip_threshold=settings.clip_threshold,
        eps1=settings.eps1,
        eps2=settings.eps2,
    )


def _lion(groups, training):
    settings = training.lion
    library = _need("pytorch_optimizer", "lion", "pip install -r requirements-global.txt")
    return library.Lion(
        groups,
        lr=training.learning_rate,
        betas=(settings.beta1, settings.beta2),
        weight_decay=training.weight_decay,
        weight_decouple=True,
    )


def _lamb(groups, training):
    """LAMB (pytorch-optimizer): Adam's update scaled per tensor by the ratio of the weight's norm to the update's
    (the layer-wise trust ratio; 1 where either is zero, as for a LoRA B matrix at the start); the Adam settings
    apply."""
    library = _need("pytorch_optimizer", "lamb", "pip install -r requirements-global.txt")
    return library.Lamb(
        groups,
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_epsilon,
        weight_decay=training.weight_decay,
        weight_decouple=True,
    )


def _lion_8bit(groups, training):
    settings = training.lion
    return _bitsandbytes("lion_8bit").optim.Lion8bit(
        groups, lr=training.learning_rate, betas=(settings.beta1, settings.beta2), weight_decay=training.weight_decay
    )


def _schedule_free_adamw(groups, training):
    settings = training.schedule_free
    schedulefree = _need("schedulefree", "schedule_free_adamw", "pip install -r requirements-global.txt")
    optimizer = schedulefree.AdamWScheduleFree(
        groups,
        lr=training.learning_rate,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_epsilon,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_steps,
        r=settings.r,
        weight_lr_power=settings.weight_lr_power,
        foreach=True,
    )
    optimizer.train()  # training steps need train mode; samples and saves switch to eval and back
    return optimizer


OPTIMIZER_FACTORIES: dict[str, Callable] = {
    "adamw": _adamw,
    "adamw_8bit": _adamw_8bit,
    "paged_adamw": _paged_adamw,
    "paged_adamw_8bit": _paged_adamw_8bit,
    "prodigy": _prodigy,
    "adafactor": _adafactor,
    "came": _came,
    "lion": _lion,
    "lion_8bit": _lion_8bit,
    "schedule_free_adamw": _schedule_free_adamw,
    "lamb": _lamb,
}


def create_optimizer(parameter_groups: list[dict], training) -> torch.optim.Optimizer:
    check_optimizer_settings(training)
    if training.optimizer not in OPTIMIZER_FACTORIES:
        raise ConfigError(f"training.optimizer: {training.optimizer!r} has no factory in optimizer_registry.py")
    return OPTIMIZER_FACTORIES[training.optimizer](parameter_groups, training)


def is_schedule_free(training) -> bool:
    return training.optimizer in SCHEDULE_FREE
