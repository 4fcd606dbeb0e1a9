"""fp8 weight storage (modules/module/fp8_linear.py): the layer against its formula, a converted transformer against
its bf16 original, LoRA training on an fp8 base through GenericTrainer, fp8 single files keeping their bytes, the
diffusers-folder path, sampling, and the config rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanPipeline
from safetensors import safe_open

from modules.config.loading import config_from_dict
from modules.config.validation import ConfigError
from modules.module import fp8_linear
from modules.module.fp8_linear import FP8_DTYPE, Fp8Linear, convert_to_fp8_storage, fp8_storage_names, quantise_fp8
from modules.module.lora import DEFAULT_TARGET_MODULES, attach_lora, lora_parameters, lora_state_dict
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.single_file_writer import write_single_file
from modules.wan.sampling.pipeline import generate_clip
from modules.wan.sampling.settings import resolve_settings
from modules.wan.tiny_models import build_transformer
from modules.wan.variants import VARIANTS
from tests.lora_checks import assert_no_key_problems, captured_logs
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FP8 = dict(transformer_dtype=FP8_DTYPE, text_encoder_dtype=torch.float32, vae_dtype=torch.float32)
BF16_ULP = 2.0**-8  # relative spacing of bfloat16 (8 significant bits)


def fp8_layers(transformer: torch.nn.Module) -> dict[str, Fp8Linear]:
    """Name (without peft's `.base_layer`) -> Fp8Linear."""
    return {n.replace(".base_layer", ""): m for n, m in transformer.named_modules() if isinstance(m, Fp8Linear)}


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


# ---- the layer ---------------------------------------------------------------------------------------


def test_quantiser_maps_absmax_to_448_and_rounds_within_e4m3_precision(monkeypatch):
    weight = torch.randn(48, 40, generator=torch.Generator().manual_seed(0)).mul(0.02).to(torch.bfloat16)
    fp8, scale = quantise_fp8(weight)
    # Row chunks (7 rows of 40 here) give the one-shot float32 formula's bytes and leave a float32 input untouched.
    monkeypatch.setattr(fp8_linear, "_CHUNK_ELEMENTS", 300)
    weight32 = weight.float()
    chunked, chunked_scale = quantise_fp8(weight32)
    assert torch.equal(weight32, weight.float()) and torch.equal(chunked_scale, scale)
    assert torch.equal(chunked.view(torch.uint8), (weight.float() / scale).to(FP8_DTYPE).view(torch.uint8))
    assert fp8.dtype == FP8_DTYPE and scale.dtype == torch.float32 and scale.shape == ()
    assert scale == weight.abs().max().float() / 448
    assert fp8.float().abs().max() == 448
    # e4m3: 3 mantissa bits -> half a step is 2^-4 of the value (normals);
    # subnormals step 2^-9 (half: 2^-10), times scale.
    error = (fp8.float() * scale - weight.float()).abs()
    assert (error <= torch.maximum(weight.float().abs() * 2.0**-4, scale * 2.0**-10) * (1 + 1e-6)).all()


@pytest.mark.parametrize("per_row", [False, True])
def test_layer_output_is_its_formula_and_its_backward_the_formula_s_gradient(per_row):
    generator = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(40, 24).to(torch.bfloat16)
    weight = linear.weight.detach()
    if per_row:  # one scale per output row
        scale = weight.float().abs().amax(dim=1, keepdim=True) / 448
        fp8 = (weight.float() / scale).to(FP8_DTYPE)
    else:
        fp8, scale = quantise_fp8(weight)
    layer = Fp8Linear.from_linear(linear, fp8, scale)
    assert layer.bias is linear.bias and layer.weight.dtype == FP8_DTYPE and not layer.weight.requires_grad
    # Independent reference: the weight dequantised in float32, rounded once to bf16.
    reference_weight = (fp8.float() * scale).to(torch.bfloat16)
    used = layer.dequantised_weight(torch.bfloat16)
    assert torch.equal(used, fp8.to(torch.bfloat16) * scale.to(torch.bfloat16))
    # bf16 product of bf16-rounded scale vs one rounding of the float32 product: within 2 bf16 steps.
    assert ((used.float() - reference_weight.float()).abs() <= reference_weight.float().abs() * 2 * BF16_ULP).all()

    x = torch.randn(3, 5, 40, generator=generator).to(torch.bfloat16).requires_grad_()
    out = layer(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, F.linear(x, used, linear.bias))
    # In float32 (no autocast) the layer is exactly the float32 dequantised weight.
    x32 = x.detach().float()
    assert torch.equal(layer(x32), F.linear(x32, fp8.float() * scale, linear.bias.float()))
    # Under autocast a float32 input computes in the autocast dtype.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x32), F.linear(x32.to(torch.bfloat16), used, linear.bias))

    # Backward: grad_input and grad_bias equal autograd's through the formula; the fp8 weight gets no gradient.
    grad = torch.randn(out.shape, generator=generator).to(torch.bfloat16)
    bias = linear.bias.detach().clone().requires_grad_()
    layer.bias = torch.nn.Parameter(bias.detach().clone())
    out = layer(x)
    (gx,) = torch.autograd.grad(out, x, grad, retain_graph=True)
    (gb,) = torch.autograd.grad(out, layer.bias, grad)
    x_ref = x.detach().clone().requires_grad_()
    F.linear(x_ref, used, bias).backward(grad)
    assert torch.equal(gx, x_ref.grad) and torch.allclose(gb.float(), bias.grad.float(), rtol=BF16_ULP, atol=0)
    assert layer.weight.grad is None


# ---- a converted transformer -------------------------------------------------------------------------


def test_converted_transformer_is_its_dequantised_self_close_to_bf16_and_half_the_bytes():
    torch.manual_seed(0)
    original = build_transformer(VARIANTS["TI2V-5B"], num_layers=4, heads=4, head_dim=32).to(torch.bfloat16)
    converted = copy.deepcopy(original)
    names = convert_to_fp8_storage(converted)
    # The converted set is the LoRA target set (musubi-tuner and ComfyUI's fp8 files: every block linear).
    assert names and all(any(n.endswith("." + t) for t in DEFAULT_TARGET_MODULES) for n in names)
    assert len(names) == 4 * len(DEFAULT_TARGET_MODULES) and names == fp8_storage_names(original)
    kept = {n: p for n, p in converted.named_parameters() if not any(n.startswith(m + ".weight") for m in names)}
    assert all(torch.equal(p, original.get_parameter(n)) for n, p in kept.items())  # norms, modulation, embedders, head

    # Bytes: exactly one byte per converted weight plus a float32 scale each; everything else unchanged.
    converted_numel = sum(original.get_submodule(n).weight.numel() for n in names)
    assert weight_bytes(converted) == weight_bytes(original) - converted_numel * 1 + 4 * len(names)

    # Exactly the model whose linears hold the dequantised weights (plain nn.Linear, what diffusers would run).
    dequantised = copy.deepcopy(original)
    with torch.no_grad():
        for name in names:
            dequantised.get_submodule(name).weight.copy_(
                converted.get_submodule(name).dequantised_weight(torch.bfloat16)
            )
    generator = torch.Generator().manual_seed(7)
    inputs = dict(
        hidden_states=torch.randn(1, 48, 2, 8, 8, generator=generator).to(torch.bfloat16),
        timestep=torch.tensor([640.0]),
        encoder_hidden_states=torch.randn(1, 7, 32, generator=generator).to(torch.bfloat16),
        return_dict=False,
    )
    with torch.no_grad():
        y_fp8, y_deq, y_bf16 = (m(**inputs)[0].float() for m in (converted, dequantised, original))
    assert torch.equal(y_fp8, y_deq)

    # Close to bf16, with the tolerance taken from the weights: the largest relative (Frobenius) quantisation error of
    # any converted matrix. The output is the residual stream plus block updates, each computed through quantised
    # layers whose independent errors do not add up coherently, so it should not exceed one matrix's error
    # (measured here: matrices <= 2.6%, output ~1.0%).
    weight_error = max(
        float(
            (
                converted.get_submodule(n).dequantised_weight(torch.float32)
                - original.get_submodule(n).weight.detach().float()
            ).norm()
            / original.get_submodule(n).weight.detach().float().norm()
        )
        for n in names
    )
    output_error = float((y_fp8 - y_bf16).norm() / y_bf16.norm())
    assert 0 < output_error <= weight_error, (output_error, weight_error)


def test_lora_on_fp8_base_is_float32_and_initialised_as_on_a_float32_base():
    torch.manual_seed(0)
    fp32 = build_transformer(VARIANTS["T2V-A14B"])
    fp8 = copy.deepcopy(fp32)
    convert_to_fp8_storage(fp8)
    for model in (fp32, fp8):
        torch.manual_seed(3)
        attach_lora(model, rank=4, alpha=4.0)
    assert isinstance(fp8.blocks[0].attn1.to_q.base_layer, Fp8Linear)  # peft wrapped the fp8 layer
    assert {p.dtype for p in lora_parameters(fp8)} == {torch.float32}
    a, b = lora_state_dict(fp32), lora_state_dict(fp8)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the init never passed through fp8


# ---- loading --------------------------------------------------------------------------------------------


def write_fp8_scaled_file(base: Path, folder: Path) -> tuple[object, Path]:
    """The tiny TI2V-5B's transformer (read in bf16) written as ComfyUI's fp8_scaled single file; (source, path)."""
    source = load_wan_model(base, transformer_dtype=torch.bfloat16)
    path = write_single_file(
        folder / "wan2.2_ti2v_5B_fp8_scaled.safetensors",
        source.transformer,
        "transformer",
        naming="original",
        prefix="model.diffusion_model.",
        dtype=torch.bfloat16,
        fp8_scaled=True,
    )
    return source, path


def test_fp8_scaled_single_file_keeps_its_bytes_and_scales(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    source, path = write_fp8_scaled_file(base, tmp_path)
    loaded = load_wan_model(base, **FP8, transformer_path=path).transformer
    layers = fp8_layers(loaded)
    assert sorted(layers) == sorted(fp8_storage_names(source.transformer))
    with safe_open(path, "pt") as f:  # safetensors' own reader as the reference
        for name, layer in layers.items():
            key = "model.diffusion_model." + diffusers_to_original_key(name + ".weight")
            assert torch.equal(layer.weight.view(torch.uint8), f.get_tensor(key).view(torch.uint8)), name
            assert torch.equal(layer.scale_weight, f.get_tensor(key.replace(".weight", ".scale_weight")).float()), name
    # Everything else as a bf16 load of the same file gives it (diffusers' float32 modules included).
    as_bf16 = dict(
        load_wan_model(base, transformer_dtype=torch.bfloat16, transformer_path=path).transformer.named_parameters()
    )
    others = {n: p for n, p in loaded.named_parameters() if n.rpartition(".")[0] not in layers}
    assert others and all(p.dtype == as_bf16[n].dtype and torch.equal(p, as_bf16[n]) for n, p in others.items())
    assert loaded.scale_shift_table.dtype == torch.float32 and loaded.patch_embedding.weight.dtype == torch.bfloat16


def test_bf16_single_file_and_diffusers_folder_are_quantised_per_tensor(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    bf16 = load_wan_model(base, transformer_dtype=torch.bfloat16).transformer
    path = write_single_file(
        tmp_path / "wan2.2_ti2v_5B_bf16.safetensors", bf16, "transformer", naming="original", dtype=torch.bfloat16
    )
    for loaded in (
        load_wan_model(base, **FP8, transformer_path=path).transformer,
        load_wan_model(base, **FP8).transformer,
    ):
        layers = fp8_layers(loaded)
        assert sorted(layers) == sorted(fp8_storage_names(bf16))
        for name, layer in layers.items():
            weight = bf16.get_submodule(name).weight.float()
            scale = weight.abs().max() / 448
            assert torch.equal(layer.scale_weight, scale) and torch.equal(
                layer.weight, (weight / scale).to(FP8_DTYPE)
            ), name


# ---- training and sampling -----------------------------------------------------------------------------


def test_lora_trains_on_fp8_base_leaves_it_bit_identical_and_loads_into_wan_pipeline(tiny_model_dir, tmp_path):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=3, learning_rate=5e-2)
    config.model.transformer_dtype, config.training.train_dtype = "float8_e4m3fn", "bfloat16"
    config.training.gradient_checkpointing = True
    trainer = GenericTrainer(config)
    result = trainer.train()
    (lora_file,) = result.output_files
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))

    transformer = trainer.model.transformer
    trained = lora_state_dict(transformer)
    assert {v.dtype for v in lora_parameters(transformer)} == {torch.float32}
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # B starts at zero: it trained
    # The frozen base: every fp8 tensor and scale bit-identical to a fresh fp8 load of the same model.
    fresh = fp8_layers(load_wan_model(base, **FP8).transformer)
    after = fp8_layers(transformer)
    assert after and sorted(after) == sorted(fresh)
    for name, layer in after.items():
        assert torch.equal(layer.weight.view(torch.uint8), fresh[name].weight.view(torch.uint8)), name
        assert torch.equal(layer.scale_weight, fresh[name].scale_weight), name

    pipe = WanPipeline.from_pretrained(base)
    with captured_logs() as messages:
        pipe.load_lora_weights(str(lora_file), adapter_name="trained")
    assert_no_key_problems(messages)


def test_sampling_an_fp8_model_equals_sampling_its_dequantised_bf16_model(tiny_model_dir):
    base = tiny_model_dir("TI2V-5B")
    fp8 = load_wan_model(base, **FP8)
    dequantised = load_wan_model(base, **FP8)
    for name, layer in fp8_layers(dequantised.transformer).items():
        linear = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.bfloat16)
        linear.weight, linear.bias = torch.nn.Parameter(layer.dequantised_weight(torch.bfloat16)), layer.bias
        dequantised.transformer.set_submodule(name, linear)
    from modules.config.sampling_config import SampleConfig

    settings = resolve_settings(fp8, SampleConfig(prompt="a red circle moves", width=64, height=64, frames=5, steps=2))
    frames = generate_clip(fp8, settings)
    assert frames.shape == (5, 64, 64, 3) and frames.std() > 0 and (frames >= 0).all() and (frames <= 1).all()
    assert (frames == generate_clip(dequantised, settings)).all()


# ---- config ---------------------------------------------------------------------------------------------


def config_data(**sections) -> dict:
    data = {
        "model": {"base_path": "model", "transformer_dtype": "float8_e4m3fn"},
        "data": {"concepts": [{"path": "clips"}]},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def test_config_offers_fp8_storage_with_a_16_bit_compute_dtype_only():
    assert (
        config_from_dict(config_data(training={"train_dtype": "bfloat16"})).model.transformer_dtype == "float8_e4m3fn"
    )
    assert config_from_dict(config_data(training={"train_dtype": "float16"})).training.train_dtype == "float16"
    with pytest.raises(
        ConfigError,
        match=r"model\.transformer_dtype.*training\.train_dtype.*'float32'.*Fix: set training\.train_dtype to bfloat16",
    ):
        config_from_dict(config_data(training={"train_dtype": "float32"}))
    with pytest.raises(
        ConfigError,
        match=r"model\.transformer_dtype: float8_e4m3fn cannot be used with training_method "
        r"'full'.*finetune\.weight_dtype",
    ):
        config_from_dict(config_data(training_method="full"))
    with pytest.raises(ConfigError, match="float8_e4m3fn"):
        config_from_dict({**config_data(), "model": {"base_path": "m", "vae_dtype": "float8_e4m3fn"}})
