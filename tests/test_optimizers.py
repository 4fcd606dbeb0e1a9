"""Every optimizer of training.optimizer: it lowers the loss of a tiny run through GenericTrainer, and its state
survives the backup format exactly (a step after the round trip equals a step of the optimizer that never left).

The SIGKILL-and-resume test of tests/test_resume.py is repeated for the optimizers whose state is unlike AdamW's
(schedule-free's train/eval weights, Prodigy's step-size estimate in its parameter groups, bitsandbytes' nested
quantisation state); see test_sigkilled_resume_is_exact_for.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from modules.config.optimizer_config import OPTIMIZERS
from modules.config.train_config import TrainingConfig
from modules.config.validation import ConfigError
from modules.trainer.optim.lr_schedules import lr_factor
from modules.trainer.optim.optimizer_modes import optimizer_eval_weights
from modules.trainer.optim.optimizer_registry import create_optimizer
from modules.trainer.state.backups import BackupContents, read_backup, write_backup
from modules.trainer.state.resume import _join_optimizer_state, _split_optimizer_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BITSANDBYTES = ("adamw_8bit", "paged_adamw", "paged_adamw_8bit", "lion_8bit")
# A learning rate that moves the tiny LoRA visibly in a few steps (Prodigy's is a multiplier of its estimate).
LEARNING_RATE = {"prodigy": 1.0, "lion": 1e-2, "lion_8bit": 1e-2}


def _bitsandbytes_runs() -> str | None:
    """None when bitsandbytes' optimizers run here, else why not."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (requirements-cuda.txt / requirements-rocm.txt)"
    try:
        import bitsandbytes as bnb

        param = torch.nn.Parameter(torch.ones(4096))
        param.grad = torch.ones(4096)
        bnb.optim.Lion8bit([param], lr=1e-3).step()
    except Exception as error:  # noqa: BLE001 - any failure means: not on this machine
        return f"bitsandbytes' optimizers do not run here: {type(error).__name__}: {error}"
    return None


def skip_unless_runs(optimizer: str) -> None:
    if optimizer in BITSANDBYTES and (reason := _bitsandbytes_runs()):
        pytest.skip(reason)


def training_settings(optimizer: str, **overrides) -> TrainingConfig:
    training = TrainingConfig(optimizer=optimizer, learning_rate=LEARNING_RATE.get(optimizer, 1e-2), warmup_steps=0)
    for key, value in overrides.items():
        setattr(training, key, value)
    return training


def parameters(seed: int) -> list[torch.nn.Parameter]:
    # A matrix (factored by Adafactor/CAME), a vector, and one large enough for bitsandbytes' 8-bit state (>= 4096).
    generator = torch.Generator().manual_seed(seed)
    shapes = [(64, 80), (16,), (4096,)]
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in shapes]


def step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator)
    optimizer.step()


def two_groups(params: list[torch.nn.Parameter], rate: float) -> list[dict]:
    """Parameter groups as the A14B experts have them: each its own learning rate."""
    return [
        {"params": params[:2], "lr": rate, "name": "transformer"},
        {"params": params[2:], "lr": 2 * rate, "name": "transformer_2"},
    ]


@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_optimizer_state_round_trips_through_a_backup_exactly(optimizer_name, tmp_path):
    skip_unless_runs(optimizer_name)
    training = training_settings(optimizer_name)
    original = parameters(0)
    optimizer = create_optimizer(two_groups(original, training.learning_rate), training)
    for s in range(3):
        step(optimizer, original, s)

    as_json, tensors = _split_optimizer_state(optimizer.state_dict())
    folder = write_backup(tmp_path, BackupContents(state={"optimizer": as_json}, tensors={"optimizer": tensors}), 3)
    contents = read_backup(folder)

    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in original]
    resumed = create_optimizer(two_groups(resumed_params, training.learning_rate), training)
    resumed.load_state_dict(
        _join_optimizer_state(contents.state["optimizer"], contents.tensors["optimizer"], resumed.state_dict())
    )
    for s in range(3, 6):
        step(optimizer, original, s)
        step(resumed, resumed_params, s)
    for left, right in zip(original, resumed_params):
        assert torch.equal(left, right)
    assert any(not torch.equal(p, q) for p, q in zip(original, parameters(0)))  # the steps did move the weights


def test_schedule_free_eval_weights_are_the_average_and_the_way_back_is_exact():
    training = training_settings("schedule_free_adamw")
    params = parameters(0)
    optimizer = create_optimizer([{"params": params, "lr": training.learning_rate}], training)
    for s in range(4):
        step(optimizer, params, s)
    train_point = [p.detach().clone() for p in params]
    with optimizer_eval_weights(optimizer):
        eval_point = [p.detach().clone() for p in params]
        # x = y + (1 - 1/beta1)(z - y)... is what schedulefree's eval() computes; here: it differs from y.
        assert any(not torch.equal(a, b) for a, b in zip(train_point, eval_point))
    assert all(torch.equal(p, q) for p, q in zip(params, train_point))
    assert optimizer.param_groups[0]["train_mode"]


def test_schedule_free_rejects_a_schedule():
    with pytest.raises(ConfigError, match="training.lr_scheduler.*constant"):
        create_optimizer(
            [{"params": parameters(0), "lr": 1e-3}], training_settings("schedule_free_adamw", lr_scheduler="cosine")
        )


@pytest.mark.parametrize("cycles", [1, 3])
def test_cosine_with_restarts_equals_transformers_after_warmup(cycles):
    from transformers.optimization import get_cosine_with_hard_restarts_schedule_with_warmup

    warmup, total = 5, 65
    reference = get_cosine_with_hard_restarts_schedule_with_warmup(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup, total, num_cycles=cycles
    ).lr_lambdas[0]
    ours = [
        lr_factor(s, warmup_steps=warmup, max_steps=total, schedule="cosine_with_restarts", cycles=cycles)
        for s in range(total + 3)
    ]
    assert ours[warmup:] == pytest.approx([reference(s) for s in range(warmup, total + 3)], abs=1e-12)
    # Warmup rises linearly to the peak on the last warmup step, for this schedule like every other.
    assert ours[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    restarts = [s for s in range(warmup + 1, total) if ours[s] > ours[s - 1] + 0.5]
    assert len(restarts) == cycles - 1


def test_polynomial_equals_transformers_and_min_factor_holds():
    from transformers.optimization import get_polynomial_decay_schedule_with_warmup

    warmup, total, power, end = 4, 40, 2.0, 0.1
    reference = get_polynomial_decay_schedule_with_warmup(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), warmup, total, lr_end=end, power=power
    ).lr_lambdas[0]
    ours = [
        lr_factor(s, warmup_steps=warmup, max_steps=total, schedule="polynomial", power=power, min_factor=end)
        for s in range(warmup, total + 2)
    ]
    assert ours == pytest.approx([reference(s) for s in range(warmup, total + 2)], abs=1e-12)
    for schedule in ("linear", "cosine", "cosine_with_restarts", "polynomial"):
        assert lr_factor(
            total, warmup_steps=warmup, max_steps=total, schedule=schedule, min_factor=end
        ) == pytest.approx(end)


@pytest.mark.parametrize("optimizer_name", OPTIMIZERS)
def test_each_expert_group_keeps_its_own_learning_rate(optimizer_name):
    """Two parameter groups (the A14B experts) with learning rates 1:2 and equal weights and gradients: every
    optimizer moves the second group about twice as far in its first step."""
    skip_unless_runs(optimizer_name)
    training = training_settings(optimizer_name, weight_decay=0.0)
    low, high = parameters(0), parameters(0)
    rate = training.learning_rate
    optimizer = create_optimizer(
        [{"params": low, "lr": rate, "name": "transformer"}, {"params": high, "lr": 2 * rate, "name": "transformer_2"}],
        training,
    )
    start = [p.detach().clone() for p in low]
    for params in (low, high):
        generator = torch.Generator().manual_seed(9)
        for param in params:
            param.grad = torch.randn(param.shape, generator=generator)
    optimizer.step()
    moved_low = sum((p - s).abs().sum() for p, s in zip(low, start))
    moved_high = sum((p - s).abs().sum() for p, s in zip(high, start))
    assert float(moved_low) > 0
    assert float(moved_high / moved_low) == pytest.approx(2.0, rel=0.05)
