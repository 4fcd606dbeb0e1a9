"""The optimizer state the memory planner counts (modules/config/optimizer_state_bytes.py) against the state
tensors one real optimizer step creates, for every optimizer the trainer offers."""

from __future__ import annotations

import pytest
import torch

from modules.config.optimizer_config import OPTIMIZERS
from modules.config.optimizer_state_bytes import OPTIMIZER_STATE_BYTES, optimizer_state_bytes
from modules.config.train_config import TrainConfig
from modules.trainer.optim.optimizer_registry import OPTIMIZER_FACTORIES

# Per-tensor constants (quantisation maps, factored row/column statistics) that the table leaves out weigh at most
# this much per parameter at the test's 32k-element tensors.
TOLERANCE = 0.1


def test_every_optimizer_declares_its_state():
    assert set(OPTIMIZER_STATE_BYTES) == set(OPTIMIZER_FACTORIES) == set(OPTIMIZERS)


def measured_state_bytes(training) -> float:
    """Bytes of per-parameter state tensors after one step, per parameter element."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(256, 128)), torch.nn.Parameter(torch.randn(128, 256))]
    optimizer = OPTIMIZER_FACTORIES[training.optimizer]([{"params": params, "lr": 1e-3}], training)
    for param in params:
        param.grad = torch.randn_like(param)
    optimizer.step()
    storages = {
        value.untyped_storage().data_ptr(): value.untyped_storage().nbytes()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.numel() > 1  # a step counter is not per-parameter state
    }
    return sum(storages.values()) / sum(p.numel() for p in params)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_declared_state_bytes_match_a_real_step(name):
    training = TrainConfig().training
    training.optimizer = name
    declared = optimizer_state_bytes(training)
    measured = measured_state_bytes(training)
    assert measured > 0 or declared == 0
    assert abs(measured - declared) <= TOLERANCE, f"{name}: declared {declared}, a real step keeps {measured:.3f}"


def test_adafactor_first_moment_counts():
    training = TrainConfig().training
    training.optimizer = "adafactor"
    training.adafactor.beta1 = 0.9
    assert optimizer_state_bytes(training) == 4.0
    assert abs(measured_state_bytes(training) - 4.0) <= TOLERANCE
