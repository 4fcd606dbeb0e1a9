"""Which WAN 2.2 expert trains on a step, and which noise levels it sees.

A14B splits the noise range at a boundary: `transformer` (high noise) serves t >= boundary * 1000 and
`transformer_2` (low noise) serves t below it, as in diffusers' pipelines. TI2V-5B has one expert.
"""

from __future__ import annotations

import torch

from modules.config.validation import ConfigError
from modules.module.flow_matching import distribution_settings, sigma_cdf
from modules.wan.variants import HIGH, LOW, WanVariant

_CHOICE = {"both": [HIGH, LOW], "high_noise": [HIGH], "low_noise": [LOW]}


def trained_experts(variant: WanVariant, train: str) -> list[str]:
    if not variant.has_transformer_2:
        return [HIGH]
    try:
        return list(_CHOICE[train])
    except KeyError:
        raise ConfigError(f"experts.train: {train!r}; choose both, high_noise or low_noise") from None


def boundary_ratio(variant: WanVariant, experts_config) -> float | None:
    if not variant.has_transformer_2:
        return None
    return experts_config.boundary_ratio if experts_config.boundary_ratio is not None else variant.boundary_ratio


def sigma_range(expert: str, boundary: float | None) -> tuple[float, float]:
    if boundary is None:
        return (0.0, 1.0)
    return (boundary, 1.0) if expert == HIGH else (0.0, boundary)


def high_noise_share(training, experts_config, boundary: float) -> float:
    """Share of steps for the high-noise expert: configured, or the distribution's own mass above the boundary."""
    if experts_config.high_noise_step_ratio is not None:
        return experts_config.high_noise_step_ratio
    below = sigma_cdf(boundary, **distribution_settings(training))
    return 1.0 - below


def expert_for_step(global_step: int, experts: list[str], high_share: float, switch_every: int, seed: int) -> str:
    """The expert of an optimizer step: one draw per block of `switch_every` steps.

    Seeded by (seed, block) rather than drawn from the run's generator, so it is the same for every
    micro-batch of the step and after a resume, whatever else consumed random numbers.
    """
    if len(experts) == 1:
        return experts[0]
    block = global_step // switch_every
    generator = torch.Generator().manual_seed(seed * 1_000_003 + block)
    return HIGH if float(torch.rand(1, generator=generator)) < high_share else LOW
