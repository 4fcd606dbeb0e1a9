"""EMA of the trained weights: the formula over the recorded weight history, where the copy lives, and that
samples and the saved LoRA use it while training goes on with (and ends on) the live weights.

The reference EMA is recomputed here in float64 from the weights recorded after every optimizer step
(ema_0 = the initial weights; at every `update_interval`-th step ema = decay * ema + (1 - decay) * weights),
independently of modules/trainer/state/ema.py. Exact resume with EMA on (the EMA state in backups) is
tests/test_resume.py, which runs with ema.enabled.
"""

from pathlib import Path

import pytest
import torch

from modules.config.sampling_config import SampleConfig
from modules.config.train_config import EmaConfig, TrainConfig
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.trainer.generic_trainer import GenericTrainer
from modules.trainer.state.ema import create_ema
from modules.wan.formats.lora_file import load_lora_file
from tests.config_builders import tiny_run_config

STEPS, DECAY, INTERVAL = 5, 0.7, 2  # a small decay and an interval > 1, so both visibly shape the result


def lora_config(base: Path, tmp_path: Path) -> TrainConfig:
    data = tmp_path / "data"
    data.mkdir()
    write_clip(DemoClip("clip", "circle", "red", "blue", 32, 32, 9, 16), data)
    config = tiny_run_config(
        base,
        tmp_path / "run",
        [{"path": data}],
        cache_dir=tmp_path / "cache",
        max_steps=STEPS,
        learning_rate=3e-3,
        lr_scheduler="constant",
    )
    config.lora.rank, config.lora.alpha = 4, 4.0
    config.ema = EmaConfig(enabled=True, decay=DECAY, update_interval=INTERVAL, device="cpu")
    return config


def reference_ema(history: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """history[0]: the initial weights; history[s]: the weights after optimizer step s."""
    ema = [w.double() for w in history[0]]
    for step, weights in enumerate(history[1:], start=1):
        if step % INTERVAL == 0:
            ema = [DECAY * e + (1 - DECAY) * w.double() for e, w in zip(ema, weights)]
    return ema


def assert_all_close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.double(), e, rtol=1e-6, atol=1e-7)


def test_ema_follows_the_formula_and_is_what_samples_and_the_saved_lora_use(tiny_model_dir, tmp_path):
    config = lora_config(tiny_model_dir("TI2V-5B"), tmp_path)
    config.sampling.samples = [SampleConfig(prompt="a red circle", width=32, height=32, frames=5, steps=2, seed=1)]
    config.sampling.format = "png"
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    snapshot = lambda: [p.detach().clone() for p in trainer.parameters]  # noqa: E731
    history = [snapshot()]
    trainer.step_callbacks.append(lambda progress, loss: history.append(snapshot()))
    # What the transformer holds when the end sample runs (eval mode; training steps run in train mode).
    sampled_with = []
    trainer.model.transformer.register_forward_pre_hook(
        lambda module, args: None if module.training or sampled_with else sampled_with.append(snapshot())
    )
    result = trainer.train()

    assert len(history) == STEPS + 1
    expected = reference_ema(history)
    ema = trainer.ema
    assert all(s.dtype == torch.float32 and s.device.type == "cpu" for s in ema.shadow)
    assert_all_close(ema.shadow, expected)
    live = history[-1]
    assert any(not torch.allclose(e.float(), w) for e, w in zip(expected, live)), "EMA equals the live weights"

    # After the final save and the end sample the live training weights are back, bit for bit.
    assert all(torch.equal(p.detach(), w) for p, w in zip(trainer.parameters, live))
    assert result.sample_files and sampled_with, "the end sample did not run the transformer"
    assert_all_close(sampled_with[0], expected)

    # The saved LoRA holds the EMA, not the live weights (peft names: the adapter name dropped).
    (saved,) = result.output_files
    state_dict, _ = load_lora_file(saved)
    names = {id(p): n.replace(".default", "") for n, p in trainer.model.transformer.named_parameters()}
    ordered = [state_dict[names[id(p)]] for p in trainer.parameters]
    assert len(state_dict) == len(ordered)
    assert_all_close(ordered, expected)


def Settings(device: str) -> EmaConfig:  # noqa: N802 - reads as the settings it builds
    return EmaConfig(enabled=True, decay=0.999, update_interval=1, device=device)


def test_ema_copy_is_float32_on_the_configured_device():
    # A bf16 weight moved by one bf16 step: a bf16 average would round (1 - decay) * step away; float32 keeps it.
    weight = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    ema = create_ema(Settings("cpu"), [weight], train_device=torch.device("meta"))
    assert ema.shadow[0].device.type == "cpu" and ema.shadow[0].dtype == torch.float32
    with torch.no_grad():
        weight.add_(2.0**-7)  # 1.0078125: the next bf16 value after 1
    ema.update(1)
    expected = 0.999 * 1.0 + 0.001 * (1 + 2.0**-7)
    assert torch.allclose(ema.shadow[0], torch.full((4,), expected), rtol=0, atol=1e-7)
    assert float(ema.shadow[0][0]) != 1.0

    # "train_device" keeps the copy where training runs: the meta device stands in for an accelerator here
    # (no data, so placement is all that is checked); on a machine with CUDA the real device is checked too.
    on_train_device = create_ema(Settings("train_device"), [weight], train_device=torch.device("meta"))
    assert on_train_device.shadow[0].device.type == "meta" and on_train_device.shadow[0].dtype == torch.float32
    assert create_ema(Settings("cpu"), [weight], torch.device("meta")).shadow[0].device.type == "cpu"
    if torch.cuda.is_available():
        cuda_weight = torch.nn.Parameter(torch.ones(4, device="cuda", dtype=torch.bfloat16))
        assert create_ema(Settings("train_device"), [cuda_weight], torch.device("cuda")).shadow[0].is_cuda
        assert create_ema(Settings("cpu"), [cuda_weight], torch.device("cuda")).shadow[0].device.type == "cpu"


def test_swapped_in_restores_the_live_weights_even_when_the_block_fails():
    weight = torch.nn.Parameter(torch.arange(4, dtype=torch.float32))
    ema = create_ema(Settings("cpu"), [weight], torch.device("cpu"))
    ema.shadow[0].fill_(7.0)
    with pytest.raises(RuntimeError, match="sample failed"):
        with ema.swapped_in():
            assert torch.equal(weight.detach(), torch.full((4,), 7.0))
            raise RuntimeError("sample failed")
    assert torch.equal(weight.detach(), torch.arange(4, dtype=torch.float32))
