"""Noise-level sampling against textbook draws, and the flow-matching input/target formulas."""

import pytest
import torch

from modules.module.flow_matching import noisy_input, sample_sigmas, shift_sigma, velocity_target

N = 10_000
# Two-sample Kolmogorov-Smirnov critical value at alpha = 0.001: 1.95 * sqrt((n + m) / (n * m)).
KS_LIMIT = 1.95 * ((N + N) / (N * N)) ** 0.5


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    values = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, values, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, values, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


def textbook_draws(distribution, count, generator, shift, mean=0.0, std=1.0, scale=1.0):
    """The distributions as peers define them: direct draws, no inverse CDFs."""
    if distribution == "uniform":
        sigma = torch.rand(count, generator=generator)
    elif distribution == "logit_normal":
        sigma = torch.sigmoid(mean + std * torch.randn(count, generator=generator))
    else:
        sigma = torch.sigmoid(scale * torch.randn(count, generator=generator))
    return shift_sigma(sigma, shift)


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal", "sigmoid"])
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_unrestricted_draws_match_the_textbook_distribution(distribution, shift):
    ours = sample_sigmas(
        N,
        torch.Generator().manual_seed(0),
        distribution=distribution,
        shift=shift,
        logit_mean=0.3,
        logit_std=1.2,
        sigmoid_scale=1.5,
    )
    reference = textbook_draws(distribution, N, torch.Generator().manual_seed(1), shift, 0.3, 1.2, 1.5)
    assert ks_statistic(ours, reference) < KS_LIMIT


@pytest.mark.parametrize("distribution", ["uniform", "logit_normal", "sigmoid"])
@pytest.mark.parametrize("sigma_range", [(0.875, 1.0), (0.0, 0.875), (0.0, 0.9)])
def test_restricted_draws_are_the_distribution_conditioned_on_the_range(distribution, sigma_range):
    low, high = sigma_range
    ours = sample_sigmas(
        N, torch.Generator().manual_seed(0), distribution=distribution, shift=3.0, sigma_range=sigma_range
    )
    t = ours * 1000
    assert bool((t >= low * 1000).all()) and bool((t < high * 1000).all() if high < 1 else (t <= 1000).all())
    # Reference: rejection sampling of textbook draws (keeps the shape, no clamping).
    pool = textbook_draws(distribution, 40 * N, torch.Generator().manual_seed(2), 3.0)
    kept = pool[(pool >= low) & (pool < high)][:N]
    assert len(kept) > 2000
    limit = 1.95 * ((N + len(kept)) / (N * len(kept))) ** 0.5
    assert ks_statistic(ours, kept) < limit


def test_flow_matching_formulas():
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    sigma = torch.tensor([0.0, 1.0])
    x_t = noisy_input(x0, noise, sigma)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[1], noise[1])
    half = noisy_input(x0, noise, torch.tensor([0.25, 0.25]))
    assert torch.allclose(half, 0.75 * x0 + 0.25 * noise)
    # Moving along the velocity from x_t by sigma returns x0: x_t - sigma * (noise - x0) = x0.
    assert torch.allclose(half - 0.25 * velocity_target(x0, noise), x0, atol=1e-6)


def test_shift_matches_the_published_formula():
    sigma = torch.linspace(0, 1, 11)
    assert torch.allclose(shift_sigma(sigma, 5.0), 5 * sigma / (1 + 4 * sigma))
