"""LoRA training end to end through GenericTrainer.train() on a tiny TI2V-5B model: it overfits one clip, and the
file it saves is read by diffusers' own loader into a WanPipeline that then computes what the trainer computed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline

from modules.config.train_config import ConceptConfig, ModelConfig, TrainConfig
from modules.data.demo_data import DemoClip, write_clip
from modules.module.lora import lora_layers, lora_state_dict
from modules.trainer.generic_trainer import GenericTrainer
from tests.lora_checks import assert_no_key_problems, captured_logs

# fp32 everywhere; diffusers folds alpha/rank into A and B when it reads a ComfyUI file, so the two forwards differ
# only by float rounding of that product (measured ~1e-7 on these sizes).
ATOL = 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models are dominated by thread overhead on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_clip(folder: Path, size: int = 32, frames: int = 9) -> Path:
    folder.mkdir(parents=True)
    write_clip(DemoClip("clip", "circle", "red", "blue", size, size, frames, 24), folder)
    return folder


def lora_config(base: Path, data: Path, workspace: Path, **training) -> TrainConfig:
    config = TrainConfig(model=ModelConfig(base_path=str(base), transformer_dtype="float32",
                                           text_encoder_dtype="float32", text_max_length=16))
    config.data.concepts = [ConceptConfig(path=str(data), caption_source="text", caption_text="a red circle moves")]
    config.data.resolution, config.data.frames = 32, 5
    config.lora.rank, config.lora.alpha = 4, 3.0  # scale 0.75: alpha handling is exercised
    config.training.train_dtype, config.training.gradient_checkpointing, config.training.device = "float32", False, "cpu"
    for key, value in training.items():
        setattr(config.training, key, value)
    config.output.workspace_dir, config.output.tensorboard, config.output.save_dtype = str(workspace), False, "float32"
    config.sampling.samples = []
    return config


def transformer_inputs(transformer) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return dict(hidden_states=torch.randn(1, transformer.config.in_channels, 2, 8, 8, generator=generator),
                timestep=torch.tensor([640.0]),
                encoder_hidden_states=torch.randn(1, 7, transformer.config.text_dim, generator=generator))


@torch.no_grad()
def forward(transformer, inputs: dict) -> torch.Tensor:
    return transformer(**inputs, return_dict=False)[0]


@pytest.mark.parametrize("lora_format", ["comfyui", "diffusers"])
def test_trained_lora_loads_into_wan_pipeline_and_computes_what_the_trainer_computes(tiny_model_dir, tmp_path, lora_format):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=3, learning_rate=5e-2)
    config.output.lora_format = lora_format
    trainer = GenericTrainer(config)
    result = trainer.train()
    (lora_file,) = result.output_files
    assert lora_file.exists() and all(torch.isfinite(torch.tensor(result.losses)))

    ours = trainer.model.transformer.eval()
    trained = lora_state_dict(ours)
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # the adapter did train

    pipe = WanPipeline.from_pretrained(base)
    inputs = transformer_inputs(ours)
    without_lora = forward(pipe.transformer, inputs)
    with captured_logs() as messages:
        pipe.load_lora_weights(str(lora_file), adapter_name="trained")
    assert_no_key_problems(messages)
    assert set(lora_layers(pipe.transformer)) == set(lora_layers(ours))  # every adapted layer, nothing more
    assert set(lora_state_dict(pipe.transformer, "trained")) == set(trained)

    expected = forward(ours, inputs)
    torch.testing.assert_close(forward(pipe.transformer, inputs), expected, atol=ATOL, rtol=0)
    assert (expected - without_lora).abs().max() > 100 * ATOL  # the comparison can tell a LoRA from none
