"""Quantised frozen bases (model.transformer_dtype int8 / nf4 through bitsandbytes, modules/module/bnb_linear.py)
and fp8 UMT5 storage: a LoRA trains on a quantised tiny base through the real trainer, and its file loads into the
bf16 base in diffusers with no key warnings and the same adapter; the quantised layers compute close to the
originals; an fp8 UMT5 encodes close to the bf16 one and changes the caption cache key."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanPipeline
from peft.tuners.lora import LoraLayer

from modules.module.bnb_linear import BitsAndBytesUnavailable, check_quantised_backend, quantised_linear
from modules.module.fp8_linear import Fp8Linear
from modules.module.lora import lora_layers
from modules.trainer.generic_trainer import GenericTrainer
from modules.wan.loading.storage import convert_text_encoder_to_fp8
from tests.lora_checks import assert_no_key_problems, captured_logs
from tests.test_training import lora_config, one_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bitsandbytes_reason() -> str | None:
    """Why int8/nf4 cannot run here (None: they can): the same probe the loader runs before loading."""
    try:
        for kind in ("int8", "nf4"):
            check_quantised_backend(kind, torch.device("cpu"), torch.float32)
    except BitsAndBytesUnavailable as error:
        return str(error)
    return None


needs_bitsandbytes = pytest.mark.skipif(bitsandbytes_reason() is not None, reason=str(bitsandbytes_reason()))


@needs_bitsandbytes
@pytest.mark.parametrize("kind, tolerance", [("int8", 0.02), ("nf4", 0.15)])
def test_quantised_layer_computes_close_to_the_original(kind, tolerance):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(5, 64, requires_grad=True)
    layer = quantised_linear(linear, kind, torch.float32)
    assert type(layer.weight).__name__ == ("Int8Params" if kind == "int8" else "Params4bit")
    assert layer.weight.element_size() * layer.weight.numel() <= 64 * 48 // (1 if kind == "int8" else 2)
    expected, got = linear(x), layer(x)
    relative = (got - expected).norm() / expected.norm()
    assert 0 < relative < tolerance  # quantised (not the float weights), within the format's error
    got.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@needs_bitsandbytes
@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_lora_trained_on_a_quantised_base_loads_into_the_bf16_base_in_diffusers(tiny_model_dir, tmp_path, kind):
    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run", max_steps=3, learning_rate=5e-2)
    config.model.transformer_dtype = kind
    trainer = GenericTrainer(config)
    result = trainer.train()
    (lora_file,) = result.output_files
    assert all(torch.isfinite(torch.tensor(result.losses)))
    ours = trainer.model.transformer
    bases = {name: layer.get_base_layer() for name, layer in lora_layers(ours).items()}
    assert bases and all(type(b.weight).__name__ in ("Int8Params", "Params4bit") for b in bases.values())

    pipe = WanPipeline.from_pretrained(base, torch_dtype=torch.bfloat16)
    with captured_logs() as messages:
        pipe.load_lora_weights(str(lora_file), adapter_name="trained")
    assert_no_key_problems(messages)
    theirs = lora_layers(pipe.transformer)
    assert set(theirs) == set(bases)
    for name, layer in lora_layers(ours).items():
        assert isinstance(theirs[name], LoraLayer)
        expected = layer.get_delta_weight("default").float()
        loaded = theirs[name].get_delta_weight("trained").float()
        assert expected.abs().max() > 0  # the adapter trained
        # The file and the model are bf16: A and B each rounded to 8 significant bits.
        assert (loaded - expected).norm() / expected.norm() < 2**-6


def test_fp8_umt5_encodes_close_to_bf16_and_changes_the_caption_cache_key(tiny_model_dir, tmp_path):
    from modules.wan.loading.loader import WanModelLoader

    base = tiny_model_dir("TI2V-5B")
    config = lora_config(base, one_clip(tmp_path / "data"), tmp_path / "run")
    config.model.text_encoder_dtype = "bfloat16"
    plain = WanModelLoader().load(config)
    config.model.text_encoder_dtype = "float8_e4m3fn"
    fp8 = WanModelLoader().load(config)
    converted = [n for n, m in fp8.text_encoder.named_modules() if isinstance(m, Fp8Linear)]
    assert converted and not any(n.endswith(".wo") for n in converted)  # wo stays 16-bit (see storage.py)
    assert convert_text_encoder_to_fp8(fp8.text_encoder) == []  # nothing left to convert
    assert fp8.text_encoder_identity != plain.text_encoder_identity
    prompt = ["a red circle moves from left to right"]
    (expected,), (got,) = plain.encode_text(prompt), fp8.encode_text(prompt)
    relative = (got - expected).norm() / expected.norm()
    assert 0 < relative < 0.1  # fp8 weights (3 mantissa bits) through a tiny random UMT5


@needs_bitsandbytes
def test_sampling_runs_on_an_nf4_base_close_to_the_float_base(tiny_model_dir, tmp_path):
    from modules.config.sampling_config import SampleConfig
    from modules.wan.loading.loader import WanModelLoader
    from modules.wan.sampling.pipeline import generate_clip
    from modules.wan.sampling.settings import resolve_settings

    config = lora_config(tiny_model_dir("TI2V-5B"), one_clip(tmp_path / "data"), tmp_path / "run")
    plain = WanModelLoader().load(config)
    config.model.transformer_dtype = "nf4"
    nf4 = WanModelLoader().load(config)
    assert type(nf4.transformer.blocks[0].attn1.to_q.weight).__name__ == "Params4bit"
    sample = SampleConfig(prompt="a red circle moves", width=32, height=32, frames=5, steps=2)
    expected = generate_clip(plain, resolve_settings(plain, sample))
    got = generate_clip(nf4, resolve_settings(nf4, sample))
    assert got.shape == expected.shape and 0 < abs(got - expected).mean() < 0.05


def test_a_missing_bitsandbytes_is_named_before_any_loading(tmp_path, monkeypatch):
    import sys

    from modules.config.validation import ConfigError
    from modules.wan.loading.loader import WanModelLoader

    config = lora_config(tmp_path / "no_model_here", tmp_path / "data", tmp_path / "run")
    config.model.transformer_dtype = "int8"
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what an install without the package looks like
    # The model folder does not exist: the bitsandbytes message comes first, before the loader looks at it.
    with pytest.raises(ConfigError, match=r"int8/nf4 storage needs bitsandbytes.*pip install bitsandbytes==0.50.2"):
        WanModelLoader().load(config)
