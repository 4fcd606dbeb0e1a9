"""Flow-matching math: noise-level sampling, the noisy input and the training target.

Each distribution is written as a monotone map u -> sigma of a uniform u in (0, 1), composed with the
discrete flow shift. Restricting sigma to a range [low, high) (one expert of WAN 2.2 A14B) is then exact:
draw u uniformly between the inverse images of low and high. That samples the configured distribution
conditioned on the range, keeping its shape, instead of clamping (which would pile mass on the edges).
"""

from __future__ import annotations

import math

import torch

_EPS = 1e-6


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The discrete flow shift: sigma' = shift * sigma / (1 + (shift - 1) * sigma)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def unshift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    return sigma / (shift - (shift - 1) * sigma)


def _normal_icdf(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2.0)))


def _u_to_sigma(
    u: torch.Tensor, distribution: str, logit_mean: float, logit_std: float, sigmoid_scale: float
) -> torch.Tensor:
    if distribution == "uniform":
        return u
    if distribution == "logit_normal":
        return torch.sigmoid(logit_mean + logit_std * _normal_icdf(u))
    if distribution == "sigmoid":
        return torch.sigmoid(sigmoid_scale * _normal_icdf(u))
    raise ValueError(f"unknown timestep distribution {distribution!r}")


def _sigma_to_u(
    sigma: torch.Tensor, distribution: str, logit_mean: float, logit_std: float, sigmoid_scale: float
) -> torch.Tensor:
    if distribution == "uniform":
        return sigma
    logit = torch.logit(sigma.clamp(_EPS, 1 - _EPS))
    if distribution == "logit_normal":
        return _normal_cdf((logit - logit_mean) / logit_std)
    if distribution == "sigmoid":
        return _normal_cdf(logit / sigmoid_scale)
    raise ValueError(f"unknown timestep distribution {distribution!r}")


def sample_sigmas(
    count: int,
    generator: torch.Generator,
    *,
    distribution: str = "logit_normal",
    shift: float = 1.0,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    sigmoid_scale: float = 1.0,
    sigma_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Noise levels in [0, 1] (t = 1000 * sigma), drawn from the shifted distribution within `sigma_range`."""
    params = dict(distribution=distribution, logit_mean=logit_mean, logit_std=logit_std, sigmoid_scale=sigmoid_scale)
    low, high = (torch.tensor(float(b), dtype=torch.float64) for b in sigma_range)
    u_low = _sigma_to_u(unshift_sigma(low, shift), **params)
    u_high = _sigma_to_u(unshift_sigma(high, shift), **params)
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    u = (u_low + (u_high - u_low) * u).clamp(_EPS, 1 - _EPS)
    sigma = shift_sigma(_u_to_sigma(u, **params), shift)
    # The upper bound is exclusive (t < boundary belongs to the low-noise expert); clamp after the cast
    # to float32 so that rounding cannot carry a draw onto the boundary.
    sigma = sigma.float()
    upper = torch.tensor(float(high))
    if float(high) < 1.0:
        upper = torch.nextafter(upper, torch.tensor(0.0))
    return sigma.clamp(float(low), float(upper))


def noisy_input(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - sigma) * x0 + sigma * noise, with one sigma per sample."""
    s = sigma.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the WAN transformer predicts: the flow velocity noise - x0."""
    return noise - x0


def distribution_settings(training) -> dict:
    """The training config's timestep-distribution settings, as the keywords of sample_sigmas and sigma_cdf."""
    return dict(
        distribution=training.timestep_distribution,
        shift=training.flow_shift,
        logit_mean=training.logit_mean,
        logit_std=training.logit_std,
        sigmoid_scale=training.sigmoid_scale,
    )


def sigma_cdf(
    sigma: float,
    *,
    distribution: str = "logit_normal",
    shift: float = 1.0,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    sigmoid_scale: float = 1.0,
) -> float:
    """P(drawn sigma < `sigma`) under the shifted distribution (e.g. the share of draws below an expert boundary)."""
    value = torch.tensor(float(sigma), dtype=torch.float64)
    params = dict(distribution=distribution, logit_mean=logit_mean, logit_std=logit_std, sigmoid_scale=sigmoid_scale)
    return float(_sigma_to_u(unshift_sigma(value, shift), **params))
