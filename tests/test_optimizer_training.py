"""Every optimizer trains the tiny TI2V-5B LoRA through GenericTrainer and lowers a loss measured at fixed noise
levels with fixed noise, and a SIGKILL resume from its backup is bit-exact (AdamW's is in tests/test_resume.py).
"""

from __future__ import annotations

import pytest
import torch

from modules.config.optimizer_config import OPTIMIZERS
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.optim.optimizer_modes import optimizer_eval_weights
from tests.test_optimizers import LEARNING_RATE, skip_unless_runs
from tests.test_resume import assert_sigkilled_resume_is_exact
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIGMAS = (0.3, 0.6, 0.9)
STEPS = 6


@pytest.fixture(scope="module")
def clip_and_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimizer_training")
    return one_clip(root / "data"), root / "cache"


@torch.no_grad()
def fixed_loss(trainer: GenericTrainer) -> float:
    """The training objective at fixed sigmas with fixed noise on the first batch (comparable across steps)."""
    batch = next(iter(trainer.data.batches(0)))
    total = 0.0
    with optimizer_eval_weights(trainer.optimizer):  # schedule-free: the weights a save would hold
        for sigma in SIGMAS:
            generator = torch.Generator().manual_seed(1)
            prediction = trainer.setup.predict(
                trainer.model,
                batch,
                trainer.config,
                trainer.progress,
                generator,
                deterministic_timesteps=torch.tensor([sigma]),
            )
            total += float(trainer.setup.calculate_loss(trainer.model, batch, prediction, trainer.config))
    return total / len(SIGMAS)


@pytest.mark.parametrize("optimizer_name", [o for o in OPTIMIZERS if o != "adamw"])  # adamw: tests/test_training.py
def test_a_tiny_run_lowers_the_loss(optimizer_name, tiny_model_dir, clip_and_cache, tmp_path):
    skip_unless_runs(optimizer_name)
    data, cache = clip_and_cache
    config = lora_config(
        tiny_model_dir("TI2V-5B"),
        data,
        tmp_path / "run",
        max_steps=STEPS,
        learning_rate=LEARNING_RATE.get(optimizer_name, 1e-2),
        optimizer=optimizer_name,
        weight_decay=0.0,
    )
    config.data.cache_dir = str(cache)
    # Prodigy grows its step size from d0; from the default 1e-6 six steps are too few to move a tiny LoRA.
    config.training.prodigy.d0 = 1e-2
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    before = fixed_loss(trainer)
    result = trainer.train()
    after = fixed_loss(trainer)
    assert result.steps == STEPS
    assert after < 0.99 * before, f"{optimizer_name}: fixed-sigma loss {before:.5f} -> {after:.5f}"


# Every optimizer but AdamW (tests/test_resume.py): schedule-free switches train/eval weights around the saves,
# Prodigy keeps its estimate in the parameter groups, bitsandbytes' optimizers nest quantisation state, the others
# keep factored or sign-based moments. About 20 s each on an idle 2-core machine (three subprocesses).
@pytest.mark.parametrize("optimizer_name", [o for o in OPTIMIZERS if o != "adamw"])
def test_sigkilled_resume_is_exact_for(optimizer_name, demo_overrides, tmp_path):
    skip_unless_runs(optimizer_name)
    settings = [
        f"training.optimizer={optimizer_name}",
        f"training.learning_rate={LEARNING_RATE.get(optimizer_name, 1e-3)}",
    ]
    assert_sigkilled_resume_is_exact(settings, demo_overrides, tmp_path)
