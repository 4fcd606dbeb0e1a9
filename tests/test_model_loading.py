"""Variant detection and model loading on the real tiny models, and every refusal with its message.

Bad folders are real altered copies of the tiny models in tmp_path (edited configs, deleted or swapped parts).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import UMT5EncoderModel

from modules.base.model_loader import ModelLoadError
from modules.config.train_config import ModelConfig
from modules.wan.loading.detection import describe_model_folder, detect_variant
from modules.wan.loading.loader import WanModelLoader, load_wan_model
from modules.wan.variants import VARIANTS

ALL = list(VARIANTS)
PROMPTS = ["a red circle moves from left to right over a blue gradient", "a green   square, <b>bounces</b>", ""]


def copy_model(tiny_model_dir, variant: str, dst: Path) -> Path:
    # copytree keeps mtimes (copy2), so a plain copy has the same source_identity as the original.
    return Path(shutil.copytree(tiny_model_dir(variant), dst))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def assert_error(path, *parts: str, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as info:
        detect_variant(path, **kwargs)
    message = str(info.value)
    for part in (str(path), "Found:", "Expected:", "Fix:", *parts):
        assert part in message, f"{part!r} not in: {message}"
    return message


# ---- detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_detects_each_variant(tiny_model_dir, name):
    path = tiny_model_dir(name)
    assert detect_variant(path) is VARIANTS[name]
    assert detect_variant(path, expected_variant=name) is VARIANTS[name]
    assert detect_variant(path, expected_variant="auto") is VARIANTS[name]
    found = describe_model_folder(path)
    assert found["transformer"]["in_channels"] == VARIANTS[name].transformer_in_channels
    assert found["vae"]["z_dim"] == VARIANTS[name].latent_channels
    assert (found["transformer_2"] is not None) == VARIANTS[name].has_transformer_2


def test_missing_and_non_diffusers_paths(tiny_model_dir, tmp_path):
    assert_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "empty" / "stuff").mkdir(parents=True)
    assert_error(tmp_path / "empty", "no model_index.json", "subfolders: stuff")
    nested = tmp_path / "models"
    copy_model(tiny_model_dir, "TI2V-5B", nested / "wan")
    assert_error(nested, "no model_index.json", f"e.g. {nested / 'wan'}")  # pointed one level too high
    single = tiny_model_dir("TI2V-5B") / "transformer" / "diffusion_pytorch_model.safetensors"
    assert_error(single, "single file", "not supported")


def test_other_model_family(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "sd")
    edit_json(path / "model_index.json", _class_name="StableDiffusionPipeline")
    assert_error(path, "not a WAN model", "StableDiffusionPipeline", "WanPipeline")
    path = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "vace")
    edit_json(path / "transformer" / "config.json", _class_name="WanVACETransformer3DModel")
    assert_error(path, "WanVACETransformer3DModel", "not a WAN 2.2 transformer", "WanTransformer3DModel")


def test_wan21_t2v_is_named(tiny_model_dir, tmp_path):
    # WAN 2.1 T2V: one 16-channel transformer, no second expert, no boundary.
    path = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "wan21")
    shutil.rmtree(path / "transformer_2")
    edit_json(path / "model_index.json", transformer_2=..., boundary_ratio=..., expand_timesteps=...)
    assert_error(path, "WAN 2.1", "WAN 2.2 is needed", "Wan-AI/Wan2.2-T2V-A14B-Diffusers")


def test_wan21_i2v_is_named(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "I2V-A14B", tmp_path / "wan21i2v")
    edit_json(path / "model_index.json", image_encoder=["transformers", "CLIPVisionModel"])
    edit_json(path / "transformer" / "config.json", image_dim=1280)
    assert_error(path, "WAN 2.1", "image_encoder", "WAN 2.2 is needed")


def test_vae_swapped_between_variants(tiny_model_dir, tmp_path):
    five = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "five")
    shutil.rmtree(five / "vae")
    shutil.copytree(tiny_model_dir("T2V-A14B") / "vae", five / "vae")
    assert_error(
        five,
        "mismatched parts",
        "z_dim 16",
        "TI2V-5B",
        "Wan2.2 VAE (z_dim 48",
        "copy vae/ from Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    )
    t2v = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "t2v")
    shutil.rmtree(t2v / "vae")
    shutil.copytree(tiny_model_dir("TI2V-5B") / "vae", t2v / "vae")
    assert_error(
        t2v, "mismatched parts", "z_dim 48", "T2V-A14B", "Wan2.1 VAE (z_dim 16)", "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    )


def test_i2v_transformer_in_t2v_folder(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "mixed")
    for part in ("transformer", "transformer_2"):
        shutil.rmtree(path / part)
        shutil.copytree(tiny_model_dir("I2V-A14B") / part, path / part)
    assert_error(path, "I2V transformer (36 in-channels)", "WanPipeline", "Wan-AI/Wan2.2-T2V-A14B-Diffusers")


def test_missing_transformer_2(tiny_model_dir, tmp_path):
    listed = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "listed")
    shutil.rmtree(listed / "transformer_2")
    assert_error(
        listed, "transformer_2 folder", "missing", "model_index.json lists transformer_2", "download transformer_2/"
    )
    by_boundary = copy_model(tiny_model_dir, "I2V-A14B", tmp_path / "boundary")
    shutil.rmtree(by_boundary / "transformer_2")
    edit_json(by_boundary / "model_index.json", transformer_2=...)
    assert_error(by_boundary, "transformer_2 folder", "boundary_ratio is 0.9", "Wan-AI/Wan2.2-I2V-A14B-Diffusers")


def test_transformer_2_on_disk_but_unlisted(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "unlisted")
    edit_json(path / "model_index.json", transformer_2=[None, None])
    assert_error(
        path, "transformer_2/ is on disk but model_index.json does not list it", '"transformer_2": ["diffusers"'
    )


def test_experts_with_different_channels(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "experts")
    shutil.rmtree(path / "transformer_2")
    shutil.copytree(tiny_model_dir("I2V-A14B") / "transformer", path / "transformer_2")
    assert_error(path, "different channels", "16/16 vs 36/16")


def test_wrong_boundary_and_flags(tiny_model_dir, tmp_path):
    i2v = copy_model(tiny_model_dir, "I2V-A14B", tmp_path / "i2v")
    edit_json(i2v / "model_index.json", boundary_ratio=0.875)  # the T2V value reused: a known peer mistake
    assert_error(i2v, "boundary_ratio 0.875", "boundary_ratio 0.9")
    five = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "five")
    edit_json(five / "model_index.json", expand_timesteps=False)
    assert_error(five, "expand_timesteps", "TI2V-5B")


def test_expected_variant_differs(tiny_model_dir):
    path = tiny_model_dir("TI2V-5B")
    assert_error(path, "holds TI2V-5B", "asks for T2V-A14B", "model.variant", expected_variant="T2V-A14B")
    with pytest.raises(ModelLoadError, match="unknown variant 'T2V-14B'"):
        detect_variant(path, expected_variant="T2V-14B")


# ---- loading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_loads_each_variant(tiny_model_dir, name):
    variant = VARIANTS[name]
    model = load_wan_model(tiny_model_dir(name), text_max_length=16, expected_variant=name)
    assert model.variant is variant and model.text_max_length == 16
    assert isinstance(model.transformer, WanTransformer3DModel)
    assert isinstance(model.text_encoder, UMT5EncoderModel)
    assert isinstance(model.vae, AutoencoderKLWan)
    assert isinstance(model.scheduler, UniPCMultistepScheduler)
    assert (model.transformer_2 is not None) == variant.has_transformer_2
    for expert in model.experts():
        assert isinstance(expert, WanTransformer3DModel)
        assert expert.config.in_channels == variant.transformer_in_channels
        # Loaded straight into bf16; diffusers keeps only its listed norm/time-embedding modules in fp32
        # (as in its own pipelines), everything else must be bf16 and nothing may be left on "meta".
        keep = tuple(expert._keep_in_fp32_modules)
        for pname, param in expert.named_parameters():
            assert param.device.type == "cpu", pname
            wanted = torch.float32 if any(k in pname.split(".") for k in keep) else torch.bfloat16
            assert param.dtype == wanted, pname
        assert expert.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.text_encoder.parameters())
    assert all(p.dtype == torch.float32 for p in model.vae.parameters())
    assert len(model.source_identity) == 64


def test_requested_dtypes_are_used(tiny_model_dir):
    model = load_wan_model(
        tiny_model_dir("TI2V-5B"),
        transformer_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        vae_dtype=torch.bfloat16,
    )
    assert all(p.dtype == torch.float32 for p in model.transformer.parameters())
    assert all(p.dtype == torch.float32 for p in model.text_encoder.parameters())
    assert all(p.dtype == torch.bfloat16 for p in model.vae.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_text_embeddings_match_wan_pipeline(tiny_model_dir, dtype):
    path = tiny_model_dir("TI2V-5B")
    model = load_wan_model(path, text_max_length=16, text_encoder_dtype=dtype)
    pipe = WanPipeline.from_pretrained(path, dtype=dtype, local_files_only=True)
    with torch.no_grad():  # as in WanPipeline.__call__ (with grad, CPU kernels may differ in the last bit)
        expected = pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=16, device=torch.device("cpu"))
    ours = model.encode_text(PROMPTS)
    lengths = pipe.tokenizer(PROMPTS, max_length=16, truncation=True).input_ids
    assert [e.shape[0] for e in ours] == [len(ids) for ids in lengths]  # trimmed to the real tokens
    assert torch.equal(model.pad_text_embeds(ours), expected.float())


def test_skip_transformer_2_keeps_identity(tiny_model_dir):
    path = tiny_model_dir("T2V-A14B")
    both = load_wan_model(path)
    high_only = load_wan_model(path, load_transformer_2=False)
    assert high_only.transformer_2 is None and high_only.experts() == [high_only.transformer]
    assert high_only.source_identity == both.source_identity  # caches survive switching experts


def test_source_identity_follows_files(tiny_model_dir, tmp_path):
    original = load_wan_model(tiny_model_dir("TI2V-5B")).source_identity
    path = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "copy")
    assert load_wan_model(path).source_identity == original
    weights = path / "vae" / "diffusion_pytorch_model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # re-downloaded weights
    touched = load_wan_model(path).source_identity
    assert touched != original
    edit_json(path / "vae" / "config.json", clip_output=False)
    assert load_wan_model(path).source_identity not in (original, touched)


def test_truncated_weights_name_the_file(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "T2V-A14B", tmp_path / "trunc")
    weights = path / "transformer_2" / "diffusion_pytorch_model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ModelLoadError) as info:
        load_wan_model(path)
    message = str(info.value)
    for part in (str(weights), "transformer_2", "truncated", "re-download"):
        assert part in message, message


def test_library_errors_become_model_load_errors(tiny_model_dir, tmp_path):
    # A config that does not fit its weights. The expert streams tensor by tensor and names each mismatch itself
    # (shapes; depth, which from_pretrained would silently leave unset); other parts go through diffusers, whose
    # errors become ModelLoadErrors naming the part.
    wide = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "wide")
    edit_json(wide / "transformer" / "config.json", ffn_dim=128)
    with pytest.raises(
        ModelLoadError, match=r"does not fit its config.*blocks\.0\.ffn\.net\.0\.proj\.weight \[64, 32\] vs"
    ):
        load_wan_model(wide)
    deep = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "deep")
    edit_json(deep / "transformer" / "config.json", num_layers=3)
    with pytest.raises(ModelLoadError, match=r"does not fit its config.*missing.*blocks\.2\."):
        load_wan_model(deep)
    vae = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "vae")
    edit_json(vae / "vae" / "config.json", base_dim=24)
    model = load_wan_model(vae)  # the VAE is read on first use
    with pytest.raises(ModelLoadError, match=r"loading the vae part failed.*diffusion_pytorch_model\.safetensors"):
        model.encoder_part("vae").get()


def test_pickle_weights_and_unknown_scheduler_are_refused(tiny_model_dir, tmp_path):
    path = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "pickle")
    vae = path / "vae"
    (vae / "diffusion_pytorch_model.safetensors").rename(vae / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"vae.*only pickle weights \(diffusion_pytorch_model.bin\)"):
        load_wan_model(path)
    path = copy_model(tiny_model_dir, "TI2V-5B", tmp_path / "sched")
    edit_json(path / "scheduler" / "scheduler_config.json", _class_name="DDIMScheduler")
    with pytest.raises(ModelLoadError, match=r"unsupported scheduler 'DDIMScheduler'.*UniPCMultistepScheduler"):
        load_wan_model(path)


def test_unknown_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)  # so "some-org/no-such-model" is not a local relative path either
    with pytest.raises(ModelLoadError) as info:
        load_wan_model("some-org/no-such-model")
    message = str(info.value)
    for part in (
        "some-org/no-such-model",
        "local Hugging Face cache",
        str(tmp_path / "hf" / "hub"),
        "allow_download",
        "download it first",
    ):
        assert part in message, message
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_wan_model("some-org/no-such-model", allow_download=True)


def test_hub_id_from_local_cache(tiny_model_dir, tmp_path, monkeypatch):
    # A real HF cache layout on disk (refs/main -> snapshots/<commit>), as `huggingface-cli download` leaves it.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hf" / "hub" / "models--tiny-org--wan-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model_dir("TI2V-5B"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = load_wan_model("tiny-org/wan-tiny")
    assert model.variant.name == "TI2V-5B" and model.model_path == repo / "snapshots" / commit


def test_loader_reads_the_config(tiny_model_dir):
    path = tiny_model_dir("I2V-A14B")
    config = SimpleNamespace(
        model=ModelConfig(
            base_path=str(path),
            variant="auto",
            transformer_dtype="float32",
            text_encoder_dtype="bfloat16",
            vae_dtype="float32",
            text_max_length=8,
        )
    )
    model = WanModelLoader().load(config)
    assert model.variant.name == "I2V-A14B" and model.text_max_length == 8
    assert model.transformer.dtype == torch.float32 and model.transformer_2 is not None
    config.model.variant = "TI2V-5B"
    with pytest.raises(ModelLoadError, match="holds I2V-A14B, but the config asks for TI2V-5B"):
        WanModelLoader().load(config)
    config.model.variant, config.model.vae_dtype = "auto", "float64"
    with pytest.raises(ModelLoadError, match="model.vae_dtype: unknown dtype 'float64'"):
        WanModelLoader().load(config)
