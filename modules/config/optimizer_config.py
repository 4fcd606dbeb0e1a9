"""Settings of each optimizer beyond AdamW, one section per optimizer (training.<optimizer>.*).

training.learning_rate, training.weight_decay and training.adam_beta1/adam_beta2/adam_epsilon are shared by the
Adam-like optimizers; what only one optimizer has lives in its section here. See docs/optimizers.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.config.fields import setting
from modules.config.validation import ConfigError

OPTIMIZERS = (
    "adamw",
    "adamw_8bit",
    "paged_adamw",
    "paged_adamw_8bit",
    "prodigy",
    "adafactor",
    "came",
    "lion",
    "lion_8bit",
    "schedule_free_adamw",
    "lamb",
)
# Optimizers that keep a train-mode and an eval-mode copy of the weights (modules/trainer/optim/optimizer_modes.py).
SCHEDULE_FREE = ("schedule_free_adamw",)


@dataclass
class ProdigyConfig:
    """Prodigy (prodigyopt) estimates the step size itself: training.learning_rate is a multiplier, usually 1.0."""

    d_coef: float = setting(
        1.0,
        help="Multiplier of the estimated step size (below 1: smaller steps)",
        min=0.0,
        label="Prodigy step-size multiplier",
    )
    d0: float = setting(1e-6, help="Initial step size estimate", min=0.0, label="Prodigy initial step size (d0)")
    growth_rate: float = setting(
        0.0,
        help="Largest factor the step size estimate may grow by per step; 0: unbounded",
        min=0.0,
        label="Prodigy growth rate",
    )
    use_bias_correction: bool = setting(
        False, help="Adam-style bias correction of the step size", label="Prodigy bias correction"
    )
    safeguard_warmup: bool = setting(
        False,
        help="Leave the learning rate out of the estimate's denominator during warmup (recommended with warmup)",
        label="Prodigy safeguard warmup",
    )


@dataclass
class AdafactorConfig:
    """Adafactor (transformers) with factored second moments; runs on training.learning_rate and its schedule."""

    beta1: float = setting(
        0.0,
        help="First-moment decay; 0: no first moment (Adafactor's memory saving)",
        min=0.0,
        max=1.0,
        label="Adafactor beta1 (momentum)",
    )
    decay_rate: float = setting(
        -0.8, help="Exponent of the second-moment decay schedule", min=-1.0, max=0.0, label="Adafactor decay rate"
    )
    clip_threshold: float = setting(
        1.0, help="Threshold of the update's root-mean-square clipping", min=0.0, label="Adafactor update clipping"
    )
    eps1: float = setting(
        1e-30, help="Regularisation added to the squared gradient", min=0.0, label="Adafactor epsilon 1"
    )
    eps2: float = setting(
        1e-3, help="Lower bound of the parameter scale (with scale_parameter)", min=0.0, label="Adafactor epsilon 2"
    )
    scale_parameter: bool = setting(
        False, help="Scale the learning rate by the parameter's root mean square", label="Adafactor parameter scaling"
    )


@dataclass
class CameConfig:
    """CAME (pytorch-optimizer): Adafactor-like memory with a confidence-guided update; betas 1-2 are adam_beta1/2."""

    beta3: float = setting(
        0.9999, help="Decay of the confidence (residual) moments", min=0.0, max=1.0, label="CAME beta3 (confidence)"
    )
    clip_threshold: float = setting(
        1.0, help="Threshold of the update's root-mean-square clipping", min=0.0, label="CAME update clipping"
    )
    eps1: float = setting(1e-30, help="Regularisation of the squared gradient", min=0.0, label="CAME epsilon 1")
    eps2: float = setting(1e-16, help="Regularisation of the confidence", min=0.0, label="CAME epsilon 2")


@dataclass
class LionConfig:
    """Lion (pytorch-optimizer; bitsandbytes for lion_8bit): sign updates, so a 3-10x smaller learning rate than
    AdamW's."""

    beta1: float = setting(
        0.9, help="Interpolation of momentum and gradient for the update", min=0.0, max=1.0, label="Lion beta1"
    )
    beta2: float = setting(0.99, help="Momentum decay", min=0.0, max=1.0, label="Lion beta2")


@dataclass
class ScheduleFreeConfig:
    """Schedule-free AdamW (schedulefree): no LR schedule; training.warmup_steps is the optimizer's own warmup.
    Samples and saves use its averaged weights (the trainer switches it to eval mode around them)."""

    r: float = setting(
        0.0, help="Polynomial weighting power of the average", min=0.0, label="Schedule-free averaging power (r)"
    )
    weight_lr_power: float = setting(
        2.0, help="Power of the learning rate in the averaging weights", min=0.0, label="Schedule-free weight LR power"
    )


def check_optimizer_settings(training) -> None:
    """Combinations the field declarations alone cannot reject."""
    if training.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"training.optimizer: unknown optimizer {training.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    if training.optimizer in SCHEDULE_FREE and training.lr_scheduler != "constant":
        raise ConfigError(
            f"training.lr_scheduler: {training.lr_scheduler!r} with {training.optimizer}; a schedule-free optimizer "
            "needs no schedule (training.warmup_steps is its own warmup). Fix: set training.lr_scheduler to constant"
        )
