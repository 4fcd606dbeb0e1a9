"""LoRA training end to end through GenericTrainer.train() on a tiny TI2V-5B model: it overfits one clip, and the
file it saves is read by diffusers' own loader into a WanPipeline that then computes what the trainer computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline

from modules.config.train_config import TrainConfig
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.module.lora import lora_layers, lora_state_dict
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.tiny_models import write_tiny_model
from tests.config_builders import tiny_run_config
from tests.lora_checks import assert_no_key_problems, captured_logs

# fp32 everywhere; diffusers folds alpha/rank into A and B when it reads a ComfyUI file, so the two forwards differ
# only by float rounding of that product (measured ~1e-7 on these sizes).
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_clip(folder: Path, size: int = 32, shape: str = "circle", color: str = "red", background: str = "blue") -> Path:
    folder.mkdir(parents=True)
    write_clip(DemoClip("clip", shape, color, background, size, size, 9, 24), folder)
    return folder


def lora_config(base: Path, data: Path, workspace: Path, resolution: int = 32, **training) -> TrainConfig:
    concept = {"path": data, "caption_source": "text", "caption_text": "a red circle moves"}
    config = tiny_run_config(base, workspace, [concept], resolution=resolution, text_max_length=16, **training)
    config.lora.rank, config.lora.alpha = 4, 3.0  # scale 0.75: alpha handling is exercised
    return config


def transformer_inputs(transformer) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return dict(
        hidden_states=torch.randn(1, transformer.config.in_channels, 2, 8, 8, generator=generator),
        timestep=torch.tensor([640.0]),
        encoder_hidden_states=torch.randn(1, 7, transformer.config.text_dim, generator=generator),
    )


@torch.no_grad()
def forward(transformer, inputs: dict) -> torch.Tensor:
    return transformer(**inputs, return_dict=False)[0]


@pytest.mark.parametrize("lora_format", ["comfyui", "diffusers"])
def test_trained_lora_loads_into_wan_pipeline_and_computes_what_the_trainer_computes(
    tiny_model_dir, tmp_path, lora_format
):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=3, learning_rate=5e-2)
    config.output.lora_format = lora_format
    trainer = GenericTrainer(config)
    result = trainer.train()
    (lora_file,) = result.output_files
    assert lora_file.exists() and all(torch.isfinite(torch.tensor(result.losses)))
    assert lora_file.stat().st_mode & 0o777 == 0o644  # readable by another account (e.g. the one ComfyUI runs as)

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


# ---- overfitting one clip -----------------------------------------------------------------------------------------
# Why the base model is prepared in two steps before the LoRA trains (measured while writing this test):
# 1. The tiny VAE is random, so the published latent statistics in its config leave its latents far from unit
#    variance (variance ~0.3, nearly all of it a per-channel offset). Real WAN latents are unit-variance by those
#    statistics; the test sets the tiny VAE's statistics the same way, measured on the clip.
# 2. A random transformer's patch embedding and output head are random: frozen, they cannot carry the noise in x_t
#    through to the prediction, and a LoRA on the blocks alone stalls at the loss of "noise unknown" (~0.6 of the
#    start). A real WAN's were trained to. So our own full fine-tune trains embedder, head and modulation on
#    another clip first, saves a diffusers folder, and that folder is the LoRA run's model.base_path.
SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)
OVERFIT_SIZE = dict(num_layers=2, heads=4, head_dim=64)  # inner width 256 >= the 192 features of a 2x2 patch


def calibrate_latent_statistics(base: Path, data: Path, workspace: Path) -> None:
    """Set the VAE config's latents_mean/std to the clip's per-channel statistics (unit-variance latents)."""
    trainer = GenericTrainer(lora_config(base, data, workspace, resolution=64))
    trainer.load_and_cache()
    normalised = next(iter(trainer.data.batches(0)))["latents"].double()
    config_file = base / "vae" / "config.json"
    vae = json.loads(config_file.read_text())
    shape = (1, -1, 1, 1, 1)
    raw = normalised * torch.tensor(vae["latents_std"]).double().view(shape) + torch.tensor(
        vae["latents_mean"]
    ).double().view(shape)
    vae["latents_mean"], vae["latents_std"] = raw.mean(dim=(0, 2, 3, 4)).tolist(), raw.std(dim=(0, 2, 3, 4)).tolist()
    config_file.write_text(json.dumps(vae))


def pretrained_base(base: Path, data: Path, workspace: Path) -> Path:
    config = lora_config(base, data, workspace, resolution=64, max_steps=400, learning_rate=3e-3)
    config.training_method = "full"
    config.finetune.block_filter = "patch_embedding,proj_out,scale_shift_table"
    config.finetune.save_single_file = False
    (folder,) = GenericTrainer(config).train().output_files
    return folder


def loss_at_fixed_timesteps_and_noise(trainer: GenericTrainer, batch: dict) -> float:
    total = 0.0
    with torch.no_grad():
        for sigma in SIGMAS:
            prediction = trainer.setup.predict(
                trainer.model,
                batch,
                trainer.config,
                trainer.progress,
                torch.Generator().manual_seed(99),
                deterministic_timesteps=torch.tensor([sigma]),
            )
            total += trainer.setup.calculate_loss(trainer.model, batch, prediction, trainer.config).item()
    return total / len(SIGMAS)


def test_lora_overfits_one_clip_to_half_its_loss(tmp_path):
    base = write_tiny_model("TI2V-5B", tmp_path / "model", transformer_size=OVERFIT_SIZE)
    clip = one_clip(tmp_path / "clip", size=64)
    other = one_clip(tmp_path / "other", size=64, shape="square", color="green", background="grey")
    calibrate_latent_statistics(base, clip, tmp_path / "calibration")
    base = pretrained_base(base, other, tmp_path / "pretrain")

    config = lora_config(base, clip, tmp_path / "run", resolution=64, max_steps=1000, learning_rate=3e-3)
    config.lora.rank, config.lora.alpha = 16, 16.0
    training = config.training
    training.timestep_distribution, training.flow_shift, training.weight_decay, training.lr_scheduler = (
        "uniform",
        1.0,
        0.0,
        "constant",
    )
    trainer = GenericTrainer(config)
    trainer.load_and_cache()
    trainer.set_up_training()
    (batch,) = list(trainer.data.batches(0))
    assert abs(batch["latents"].var().item() - 1.0) < 0.1  # the calibration did what it says
    before = loss_at_fixed_timesteps_and_noise(trainer, batch)
    result = trainer.train()  # random noise and timesteps every step, as in any run
    after = loss_at_fixed_timesteps_and_noise(trainer, batch)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert after <= 0.5 * before, (before, after)  # measured: 2.25 -> 0.68 (0.30)
