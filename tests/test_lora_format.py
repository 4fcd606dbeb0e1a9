"""Our LoRA files load into diffusers' WanPipeline (the independent reference) with no lost keys and the
same effect as our adapter; the ComfyUI file names modules ComfyUI's (original-named) model has."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from safetensors import safe_open

from modules.config.train_config import ModelConfig, TrainConfig
from modules.module.lora import attach_lora, lora_layers, lora_state_dict, set_lora_state_dict
from modules.wan.formats.key_map import diffusers_to_original_state_dict
from modules.wan.formats.lora_file import load_lora_file, save_lora_file
from modules.wan.model import WanModel
from modules.wan.saving.lora_saver import WanLoRASaver
from modules.wan.variants import VARIANTS
from tests.lora_checks import assert_no_key_problems, captured_logs

RANK, ALPHA = 4, 3.0  # scale 0.75: not a power of two, so alpha handling is really exercised
# fp32 throughout; the ComfyUI path rescales A and B by alpha/rank inside diffusers, so bit equality is not expected.
ATOL = 1e-5


def trained_transformer(folder: Path, subfolder: str = "transformer", seed: int = 1, **lora) -> WanTransformer3DModel:
    """The base transformer with an adapter whose A and B are random (a fresh adapter would be a no-op)."""
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder=subfolder)
    attach_lora(transformer, rank=RANK, alpha=ALPHA, **lora)
    generator = torch.Generator().manual_seed(seed)
    set_lora_state_dict(
        transformer,
        {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in lora_state_dict(transformer).items()},
    )
    return transformer.eval()


def transformer_inputs(transformer: WanTransformer3DModel) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    channels = transformer.config.in_channels
    return dict(
        hidden_states=torch.randn(1, channels, 2, 8, 8, generator=generator),
        timestep=torch.tensor([640.0]),
        encoder_hidden_states=torch.randn(1, 7, transformer.config.text_dim, generator=generator),
    )


@torch.no_grad()
def forward(transformer: WanTransformer3DModel, inputs: dict) -> torch.Tensor:
    return transformer(**inputs, return_dict=False)[0]


def load_into_pipeline(folder: Path, lora_file: Path, **kwargs) -> tuple[WanPipeline, list[str]]:
    pipe = WanPipeline.from_pretrained(folder)
    with captured_logs() as messages:
        pipe.load_lora_weights(str(lora_file), adapter_name="ours", **kwargs)
    return pipe, messages


@pytest.fixture(scope="module")
def ti2v(tiny_model_dir) -> Path:
    return tiny_model_dir("TI2V-5B")


@pytest.mark.parametrize("fmt", ["comfyui", "diffusers", "kohya"])
def test_file_loads_into_diffusers_with_same_effect(ti2v, tmp_path, fmt):
    ours = trained_transformer(ti2v)
    path = save_lora_file(
        lora_state_dict(ours),
        tmp_path / "lora.safetensors",
        format=fmt,
        rank=RANK,
        alpha=ALPHA,
        metadata={"wan.seed": "1"},
        variant="TI2V-5B",
    )
    assert os.listdir(tmp_path) == ["lora.safetensors"]  # no temp file left behind

    pipe, messages = load_into_pipeline(ti2v, path)
    assert_no_key_problems(messages)
    # Every adapted layer of ours got an adapter in diffusers' model, with weights for every matrix.
    assert set(lora_layers(pipe.transformer)) == set(lora_layers(ours))
    loaded = lora_state_dict(pipe.transformer, "ours")
    assert set(loaded) == set(lora_state_dict(ours))
    assert all(v.abs().sum() > 0 for v in loaded.values())

    inputs = transformer_inputs(ours)
    expected = forward(ours, inputs)
    actual = forward(pipe.transformer, inputs)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)
    pipe.transformer.disable_lora()
    assert (forward(pipe.transformer, inputs) - expected).abs().max() > 1e-3  # the LoRA does change the output


def test_comfyui_keys_name_original_modules(ti2v, tmp_path):
    ours = trained_transformer(ti2v)
    path = save_lora_file(lora_state_dict(ours), tmp_path / "c.safetensors", rank=RANK, alpha=ALPHA, metadata={})
    base = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer").state_dict()
    original_keys = set(diffusers_to_original_state_dict(base))
    with safe_open(str(path), framework="pt") as file:
        keys = list(file.keys())
        for key in keys:
            assert key.startswith("diffusion_model.")
            module = key.removeprefix("diffusion_model.").rsplit(".", 2 if key.endswith(".weight") else 1)[0]
            assert f"{module}.weight" in original_keys, key
        alphas = [file.get_tensor(k) for k in keys if k.endswith(".alpha")]
    assert len(alphas) == len(lora_layers(ours)) and all(a.item() == ALPHA for a in alphas)
    assert "diffusion_model.blocks.0.self_attn.q.lora_A.weight" in keys
    assert "diffusion_model.blocks.1.ffn.2.lora_B.weight" in keys


def test_layer_filter_limits_modules_and_file(ti2v, tmp_path):
    ours = trained_transformer(ti2v, layer_filter="blocks.1.,attn2.to_q")
    expected = {"blocks.0.attn2.to_q"} | {
        f"blocks.1.{m}"
        for m in (
            "attn1.to_q",
            "attn1.to_k",
            "attn1.to_v",
            "attn1.to_out.0",
            "attn2.to_q",
            "attn2.to_k",
            "attn2.to_v",
            "attn2.to_out.0",
            "ffn.net.0.proj",
            "ffn.net.2",
        )
    }
    assert set(lora_layers(ours)) == expected
    path = save_lora_file(lora_state_dict(ours), tmp_path / "f.safetensors", rank=RANK, alpha=ALPHA, metadata={})
    pipe, messages = load_into_pipeline(ti2v, path)
    assert_no_key_problems(messages)
    assert set(lora_layers(pipe.transformer)) == expected
    inputs = transformer_inputs(ours)
    torch.testing.assert_close(forward(pipe.transformer, inputs), forward(ours, inputs), atol=ATOL, rtol=0)

    regex = trained_transformer(ti2v, layer_filter=r"attn1\.to_(q|k)$")
    assert set(lora_layers(regex)) == {f"blocks.{b}.attn1.to_{p}" for b in (0, 1) for p in "qk"}
    with pytest.raises(ValueError, match="no block linear"):
        trained_transformer(ti2v, layer_filter="blocks.7.")


def test_a14b_lora_loads_into_transformer_2(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("T2V-A14B")
    ours = trained_transformer(folder, subfolder="transformer_2")
    path = save_lora_file(
        lora_state_dict(ours), tmp_path / "low.safetensors", rank=RANK, alpha=ALPHA, metadata={}, variant="T2V-A14B"
    )
    pipe, messages = load_into_pipeline(folder, path, load_into_transformer_2=True)
    assert_no_key_problems(messages)
    assert not lora_layers(pipe.transformer)
    assert set(lora_layers(pipe.transformer_2)) == set(lora_layers(ours))
    inputs = transformer_inputs(ours)
    torch.testing.assert_close(forward(pipe.transformer_2, inputs), forward(ours, inputs), atol=ATOL, rtol=0)


@pytest.mark.parametrize("fmt", ["comfyui", "diffusers", "kohya"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_load_lora_file_round_trip(ti2v, tmp_path, fmt, dtype):
    ours = trained_transformer(ti2v)
    state = lora_state_dict(ours)
    path = save_lora_file(
        state,
        tmp_path / "r.safetensors",
        format=fmt,
        rank=RANK,
        alpha=ALPHA,
        metadata={"wan.note": "x"},
        variant="TI2V-5B",
        dtype=dtype,
    )
    with safe_open(str(path), framework="pt") as file:
        stored = {file.get_tensor(k).dtype for k in file.keys() if k.endswith(".weight")}
    assert stored == {getattr(torch, dtype)}
    loaded, metadata = load_lora_file(path)
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], value.to(getattr(torch, dtype)).float()), key
    assert metadata["ss_network_dim"] == str(RANK) and float(metadata["ss_network_alpha"]) == ALPHA
    assert metadata["wan.lora_format"] == fmt and metadata["wan.note"] == "x"
    assert metadata["modelspec.sai_model_spec"] == "1.0.0"
    assert metadata["modelspec.architecture"] == "wan-2.2-ti2v-5b/lora"
    # A file read back fits a fresh adapter of the same shape (what resume does).
    fresh = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer")
    attach_lora(fresh, rank=int(metadata["ss_network_dim"]), alpha=float(metadata["ss_network_alpha"]))
    set_lora_state_dict(fresh, loaded)


def test_adapters_stay_float32_on_bf16_base(ti2v):
    transformer = WanTransformer3DModel.from_pretrained(ti2v, subfolder="transformer", torch_dtype=torch.bfloat16)
    attach_lora(transformer, rank=RANK, alpha=ALPHA)
    assert {v.dtype for v in lora_state_dict(transformer).values()} == {torch.float32}
    assert transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
    inputs = {k: v.to(torch.bfloat16) if k != "timestep" else v for k, v in transformer_inputs(transformer).items()}
    assert forward(transformer, inputs).dtype == torch.bfloat16


def test_saver_writes_one_file_per_expert(tiny_model_dir, tmp_path):
    folder = tiny_model_dir("T2V-A14B")
    pipe = WanPipeline.from_pretrained(folder)
    model = WanModel(
        variant=VARIANTS["T2V-A14B"],
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        transformer=pipe.transformer,
        transformer_2=pipe.transformer_2,
        scheduler=pipe.scheduler,
        model_path=folder,
    )
    for name in ("transformer", "transformer_2"):
        attach_lora(getattr(model, name), rank=RANK, alpha=ALPHA)
    model.trained_experts = ["transformer", "transformer_2"]
    config = TrainConfig(model=ModelConfig(base_path=str(folder)))
    config.lora.rank, config.lora.alpha = RANK, ALPHA
    config.output.save_dtype = "float32"
    written = WanLoRASaver().save(model, config, tmp_path / "run.safetensors")
    assert [p.name for p in written] == ["run_high_noise.safetensors", "run_low_noise.safetensors"]
    experts = [load_lora_file(p)[1]["wan.expert"] for p in written]
    assert experts == ["high_noise", "low_noise"]

    model.trained_experts = ["transformer_2"]
    config.output.lora_format = "diffusers"
    # An A14B file names its expert even when only one trained.
    (single,) = WanLoRASaver().save(model, config, tmp_path / "one.safetensors")
    assert single == tmp_path / "one_low_noise.safetensors"
    assert load_lora_file(single)[1]["wan.lora_format"] == "diffusers"
