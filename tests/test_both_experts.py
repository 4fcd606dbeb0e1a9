"""A14B with both experts in one run: each expert's LoRA changes only on its own steps, and the two saved files
load into diffusers' WanPipeline (transformer / transformer_2) with no key problems and the same outputs as the
trained adapters. Also the shared-LoRA option, per-expert learning rates and the per-expert step ratio, wired
through the real trainer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file

from modules.base.model_setup import TrainProgress
from modules.config.loading import load_config
from modules.module.lora import lora_layers, lora_state_dict
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.training import experts
from tests.lora_checks import assert_no_key_problems, captured_logs
from tests.test_lora_format import forward, transformer_inputs

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "training_presets" / "demo_t2v_a14b_lora.json"
STEPS = 8
HIGH_LR, LOW_LR = 4e-3, 2e-3
ATOL = 1e-5  # fp32 weights and adapters throughout


def make_trainer(model: Path, data: Path, cache: Path, workspace: Path, *extra: str) -> GenericTrainer:
    config = load_config(
        PRESET,
        [
            f"model.base_path={model}",
            f"data.concepts.0.path={data}",
            f"output.workspace_dir={workspace}",
            f"data.cache_dir={cache}",
            "data.resolution=32",
            "data.frames=5",
            f"training.max_steps={STEPS}",
            "training.warmup_steps=0",
            "training.lr_scheduler=constant",
            "sampling.samples=[]",
            "output.tensorboard=false",
            "output.save_every_steps=0",
            "experts.high_noise_step_ratio=0.5",
            *extra,
        ],
    )
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    return trainer


def snapshot(model) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: {k: v.detach().clone() for k, v in lora_state_dict(getattr(model, name)).items()}
        for name in (experts.HIGH, experts.LOW)
    }


def record_steps(trainer: GenericTrainer) -> tuple[list[dict], list[tuple[str, torch.Tensor]]]:
    """Snapshots of both LoRAs (before training, then after every step) and the expert and noise level that
    each predict call really used, read from its own output."""
    snapshots, used = [snapshot(trainer.model)], []
    predict = trainer.setup.predict

    def recording_predict(*args, **kwargs):
        prediction = predict(*args, **kwargs)
        used.append((prediction["expert"], prediction["sigma"].detach().cpu()))
        return prediction

    trainer.setup.predict = recording_predict
    trainer.step_callbacks.append(lambda progress, loss: snapshots.append(snapshot(trainer.model)))
    return snapshots, used


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("both_experts_cache")


@pytest.fixture(scope="module")
def separate_run(tiny_model_dir, demo_data_dir, shared_cache, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("both_experts")
    trainer = make_trainer(
        tiny_model_dir("T2V-A14B"),
        demo_data_dir,
        shared_cache,
        workspace,
        f"experts.high_noise_learning_rate={HIGH_LR}",
        f"experts.low_noise_learning_rate={LOW_LR}",
    )
    snapshots, used = record_steps(trainer)
    result = trainer.train()
    return trainer, result, snapshots, used


def test_each_lora_changes_only_on_its_experts_steps(separate_run):
    trainer, result, snapshots, used = separate_run
    assert result.steps == STEPS and len(snapshots) == STEPS + 1 and len(used) == STEPS  # one batch per step
    boundary = trainer.setup.boundary
    assert boundary == 0.875
    step_experts = [expert for expert, _ in used]
    assert set(step_experts) == {experts.HIGH, experts.LOW}, step_experts  # both experts really trained
    for step, (expert, sigma) in enumerate(used):
        # The batch of the step falls on its expert's side of the boundary.
        assert bool((sigma >= boundary).all()) if expert == experts.HIGH else bool((sigma < boundary).all())
        other = experts.LOW if expert == experts.HIGH else experts.HIGH
        before, after = snapshots[step], snapshots[step + 1]
        assert changed(before[expert], after[expert]), f"step {step + 1}: the active {expert} LoRA did not change"
        assert not changed(before[other], after[other]), f"step {step + 1}: the inactive {other} LoRA changed"


def test_per_expert_learning_rates_reach_the_optimizer(separate_run):
    trainer = separate_run[0]
    rates = {group["name"]: group["lr"] for group in trainer.optimizer.param_groups}
    assert rates == {experts.HIGH: HIGH_LR, experts.LOW: LOW_LR}


def test_step_ratio_sets_the_share_of_high_noise_steps(separate_run):
    trainer = separate_run[0]
    draws = 4000
    chosen = [
        trainer.setup.expert_for(trainer.model, trainer.config, TrainProgress(global_step=s)) for s in range(draws)
    ]
    share = chosen.count(experts.HIGH) / draws
    # Binomial(4000, 0.5): standard deviation 0.0079; 4 of them is a false alarm once in ~16,000 runs.
    assert abs(share - 0.5) < 4 * (0.25 / draws) ** 0.5


def base_pipeline(folder: Path) -> WanPipeline:
    return WanPipeline.from_pretrained(folder)  # float32, as saved


@pytest.mark.parametrize("lora_format", ["comfyui", "diffusers"])
def test_saved_expert_files_load_into_wan_pipeline_with_our_outputs(
    separate_run, tiny_model_dir, tmp_path, lora_format
):
    trainer, result = separate_run[0], separate_run[1]
    if lora_format == "comfyui":  # the preset's layout: what the run itself wrote
        files = result.output_files
    else:
        config = dataclasses.replace(
            trainer.config, output=dataclasses.replace(trainer.config.output, lora_format="diffusers")
        )
        files = trainer.plugin.saver().save(trainer.model, config, tmp_path / "lora.safetensors")
    assert [p.name for p in files] == ["lora_high_noise.safetensors", "lora_low_noise.safetensors"]
    high, low = files

    folder = tiny_model_dir("T2V-A14B")
    pipe = base_pipeline(folder)
    with captured_logs() as messages:
        pipe.load_lora_weights(str(high), adapter_name="high")
        pipe.load_lora_weights(str(low), adapter_name="low", load_into_transformer_2=True)
    assert_no_key_problems(messages)

    base = base_pipeline(folder)
    for name, loaded, reference in (
        (experts.HIGH, pipe.transformer, base.transformer),
        (experts.LOW, pipe.transformer_2, base.transformer_2),
    ):
        ours = getattr(trainer.model, name).eval()
        assert set(lora_layers(loaded)) == set(lora_layers(ours))
        inputs = transformer_inputs(ours)
        expected = forward(ours, inputs)
        torch.testing.assert_close(forward(loaded, inputs), expected, atol=ATOL, rtol=0)
        # Not vacuous: the trained LoRA moves the output well beyond the tolerance.
        assert (forward(reference, inputs) - expected).abs().max() > 100 * ATOL


def test_shared_lora_is_one_set_of_weights_trained_on_every_step(tiny_model_dir, demo_data_dir, shared_cache, tmp_path):
    trainer = make_trainer(
        tiny_model_dir("T2V-A14B"),
        demo_data_dir,
        shared_cache,
        tmp_path,
        "experts.shared_lora=true",
        "training.max_steps=4",
    )
    high_params = {id(p) for p in trainer.model.transformer.parameters() if p.requires_grad}
    low_params = {id(p) for p in trainer.model.transformer_2.parameters() if p.requires_grad}
    assert high_params == low_params  # the very same tensors
    in_optimizer = [id(p) for group in trainer.optimizer.param_groups for p in group["params"]]
    assert sorted(in_optimizer) == sorted(high_params)  # each once

    snapshots, used = record_steps(trainer)
    result = trainer.train()
    assert {expert for expert, _ in used} == {experts.HIGH, experts.LOW}
    for step in range(result.steps):  # whichever expert ran, the one LoRA changed
        assert changed(snapshots[step][experts.HIGH], snapshots[step + 1][experts.HIGH])
    high, low = (load_file(p) for p in result.output_files)
    assert high.keys() == low.keys() and all(torch.equal(high[k], low[k]) for k in high)
