"""Expert routing of A14B: noise ranges per expert, step shares, deterministic expert choice."""

import pytest
import torch

from modules.config.train_config import ExpertsConfig, TrainingConfig
from modules.module.flow_matching import sample_sigmas
from modules.wan.training import experts
from modules.wan.variants import I2V_A14B, T2V_A14B, TI2V_5B

DRAWS = 10_000


@pytest.mark.parametrize("variant, boundary", [(T2V_A14B, 0.875), (I2V_A14B, 0.9)])
def test_each_expert_draws_only_its_own_timesteps(variant, boundary):
    assert experts.boundary_ratio(variant, ExpertsConfig()) == boundary
    for expert in (experts.HIGH, experts.LOW):
        sigma = sample_sigmas(
            DRAWS,
            torch.Generator().manual_seed(3),
            distribution="logit_normal",
            shift=5.0,
            sigma_range=experts.sigma_range(expert, boundary),
        )
        t = sigma * 1000
        if expert == experts.HIGH:
            assert bool((t >= boundary * 1000).all())
        else:
            assert bool((t < boundary * 1000).all())


def test_boundary_override_and_single_expert_models():
    assert experts.boundary_ratio(T2V_A14B, ExpertsConfig(boundary_ratio=0.8)) == 0.8
    assert experts.boundary_ratio(TI2V_5B, ExpertsConfig()) is None
    assert experts.trained_experts(TI2V_5B, "both") == ["transformer"]
    assert experts.trained_experts(T2V_A14B, "low_noise") == ["transformer_2"]
    assert experts.sigma_range("transformer", None) == (0.0, 1.0)


def test_natural_high_share_is_the_mass_above_the_boundary():
    training = TrainingConfig(timestep_distribution="logit_normal", flow_shift=5.0)
    share = experts.high_noise_share(training, ExpertsConfig(), 0.875)
    draws = sample_sigmas(200_000, torch.Generator().manual_seed(0), distribution="logit_normal", shift=5.0)
    empirical = float((draws >= 0.875).float().mean())
    assert abs(share - empirical) < 0.005
    assert experts.high_noise_share(training, ExpertsConfig(high_noise_step_ratio=0.3), 0.875) == 0.3


def test_expert_choice_is_per_block_deterministic_and_follows_the_share():
    both = [experts.HIGH, experts.LOW]
    choices = [experts.expert_for_step(step, both, 0.3, 4, seed=7) for step in range(8000)]
    assert choices == [experts.expert_for_step(step, both, 0.3, 4, seed=7) for step in range(8000)]
    assert all(len(set(choices[i : i + 4])) == 1 for i in range(0, 8000, 4))
    share = choices.count(experts.HIGH) / len(choices)
    assert abs(share - 0.3) < 0.03
