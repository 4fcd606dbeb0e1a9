"""Every single-file layout on the tiny real-class models: diffusers folder -> file -> load -> equal tensors and an
identical training step; fp8 against its formula; each refusal with its message.
"""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers
from safetensors import safe_open

from modules.base.model_loader import ModelLoadError
from modules.wan.formats.key_map import diffusers_to_original_key
from modules.wan.formats.part_keys import vae_diffusers_to_original_key
from modules.wan.loading.loader import load_wan_model
from modules.wan.loading.single_file_writer import write_single_file
from modules.wan.tiny_models import build_vae
from modules.wan.variants import T2V_A14B

F32 = dict(transformer_dtype=torch.float32, text_encoder_dtype=torch.float32, vae_dtype=torch.float32)
BF16 = dict(transformer_dtype=torch.bfloat16, text_encoder_dtype=torch.bfloat16, vae_dtype=torch.bfloat16)
# (transformer layout, vae layout + suffix, text encoder layout + suffix): ComfyUI and Wan-AI forms.
LAYOUTS = {
    "comfy_prefixed": (
        dict(naming="original", prefix="model.diffusion_model."),
        ("original", ".safetensors"),
        ("diffusers", ".safetensors"),
    ),
    "comfy_plain": (dict(naming="original"), ("original", ".safetensors"), ("diffusers", ".safetensors")),
    "diffusers_names": (dict(naming="diffusers"), ("diffusers", ".safetensors"), ("diffusers", ".safetensors")),
    "wan_ai_pth": (dict(naming="original"), ("original", ".pth"), ("wan_t5", ".pth")),
}


def write_parts(ref, folder, layout, dtype, fp8_scaled=False):
    transformer, (vae_naming, vae_suffix), (te_naming, te_suffix) = LAYOUTS[layout]
    paths = {
        "transformer_path": write_single_file(
            folder / "wan_high_noise.safetensors",
            ref.transformer,
            "transformer",
            dtype=dtype,
            fp8_scaled=fp8_scaled,
            **transformer,
        ),
        "vae_path": write_single_file(folder / f"vae{vae_suffix}", ref.vae, "vae", naming=vae_naming, dtype=dtype),
        "text_encoder_path": write_single_file(
            folder / f"umt5{te_suffix}",
            ref.text_encoder,
            "text_encoder",
            naming=te_naming,
            dtype=dtype,
            fp8_scaled=fp8_scaled,
        ),
    }
    if ref.transformer_2 is not None:
        paths["transformer_2_path"] = write_single_file(
            folder / "wan_low_noise.safetensors",
            ref.transformer_2,
            "transformer",
            dtype=dtype,
            fp8_scaled=fp8_scaled,
            **transformer,
        )
    return paths


def assert_same_weights(a, b):
    for part in ("transformer", "transformer_2", "vae", "text_encoder"):
        if getattr(a, part) is None:
            assert getattr(b, part) is None
            continue
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert sa.keys() == sb.keys(), part
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), f"{part}.{key}"


def training_step(model) -> tuple[float, dict[str, torch.Tensor]]:
    """One full fine-tuning step of the first expert on fixed data: loss and updated weights."""
    transformer = model.transformer
    transformer.train()
    generator = torch.Generator().manual_seed(0)
    channels = transformer.config.in_channels
    latents = torch.randn(1, channels, 2, 4, 4, generator=generator)
    text = torch.randn(1, 8, transformer.config.text_dim, generator=generator)
    target = torch.randn(1, transformer.config.out_channels, 2, 4, 4, generator=generator)
    optimizer = torch.optim.SGD([p for p in transformer.parameters() if p.requires_grad], lr=0.1)
    out = transformer(
        hidden_states=latents.to(transformer.dtype),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=text.to(transformer.dtype),
        return_dict=False,
    )[0]
    loss = torch.nn.functional.mse_loss(out.float(), target)
    loss.backward()
    optimizer.step()
    return loss.item(), {k: v.detach().clone() for k, v in transformer.state_dict().items()}


def test_key_maps_agree_with_diffusers_converters(tiny_model_dir):
    """Our diffusers -> original names, fed to diffusers' own single-file converters, give back every name."""
    from diffusers import WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(tiny_model_dir("T2V-A14B"), subfolder="transformer")
    state = transformer.state_dict()
    original = {"model.diffusion_model." + diffusers_to_original_key(k): v for k, v in state.items()}
    assert set(convert_wan_transformer_to_diffusers(original)) == set(state)
    vae = build_vae(
        T2V_A14B, torch.Generator().manual_seed(0), num_res_blocks=2, dim_mult=(1, 2, 4, 4)
    )  # the real Wan2.1 VAE's structure
    vae_state = vae.state_dict()
    original = {vae_diffusers_to_original_key(k, 2, False): v for k, v in vae_state.items()}
    back = convert_wan_vae_to_diffusers(original)
    assert set(back) == set(vae_state) and all(back[k] is vae_state[k] for k in vae_state)


def test_wan22_vae_names_follow_the_nested_layout():
    """Facts of Wan2.2_VAE.pth: stages hold their res blocks and then their resample in one nested list."""
    assert (
        vae_diffusers_to_original_key("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", 2, True)
        == "encoder.downsamples.1.downsamples.0.shortcut.weight"
    )
    assert (
        vae_diffusers_to_original_key("encoder.down_blocks.0.downsampler.resample.1.weight", 2, True)
        == "encoder.downsamples.0.downsamples.2.resample.1.weight"
    )
    assert (
        vae_diffusers_to_original_key("decoder.up_blocks.0.upsampler.time_conv.bias", 2, True)
        == "decoder.upsamples.0.upsamples.3.time_conv.bias"
    )
    assert (
        vae_diffusers_to_original_key("decoder.up_blocks.2.resnets.1.norm2.gamma", 2, True)
        == "decoder.upsamples.2.upsamples.1.residual.3.gamma"
    )


@pytest.mark.parametrize("variant", ["TI2V-5B", "T2V-A14B"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_round_trip_fp32_and_same_training_step(tiny_model_dir, tmp_path, variant, layout):
    base = tiny_model_dir(variant)
    ref = load_wan_model(base, **F32)
    loaded = load_wan_model(base, **F32, **write_parts(ref, tmp_path, layout, torch.float32))
    assert loaded.variant is ref.variant
    assert_same_weights(ref, loaded)
    assert _same_step(loaded, ref)


def _same_step(a, b) -> bool:
    """Same loss bit for bit; updated weights equal to float32 rounding. (from_pretrained leaves tensors in the
    mmap at unaligned addresses, the single-file loader in aligned memory, so a few SIMD reductions in backward
    round differently: measured differences are ~1e-8.)"""
    loss_a, weights_a = training_step(a)
    loss_b, weights_b = training_step(b)
    return loss_a == loss_b and all(
        torch.allclose(weights_a[k].float(), weights_b[k].float(), rtol=0, atol=1e-6) for k in weights_a
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_round_trip_16_bit_files(tiny_model_dir, tmp_path, dtype):
    """A bf16/fp16 file: every weight is the fp32 weight rounded to the file's dtype, in the dtype from_pretrained
    (dtype=...) gives it (diffusers' fp32-kept modules stay fp32)."""
    base = tiny_model_dir("I2V-A14B")
    ref32 = load_wan_model(base, **F32)
    kwargs = {k: dtype for k in BF16}
    ref = load_wan_model(base, **kwargs)
    loaded = load_wan_model(base, **kwargs, **write_parts(ref32, tmp_path, "comfy_plain", dtype))
    for part in ("transformer", "transformer_2", "vae", "text_encoder"):
        s32, sref, sgot = (getattr(m, part).state_dict() for m in (ref32, ref, loaded))
        for key in s32:
            assert sgot[key].dtype == sref[key].dtype, f"{part}.{key}"
            assert torch.equal(sgot[key], s32[key].to(dtype).to(sref[key].dtype)), f"{part}.{key}"


def test_fp8_scaled_dequantises_with_its_scales(tiny_model_dir, tmp_path):
    base = tiny_model_dir("T2V-A14B")
    ref = load_wan_model(base, **F32)
    paths = write_parts(ref, tmp_path, "comfy_plain", torch.bfloat16, fp8_scaled=True)
    loaded = load_wan_model(base, **F32, **paths)
    with safe_open(paths["transformer_path"], "pt") as f:  # safetensors' own reader as the reference
        key = "blocks.0.self_attn.q.weight"
        assert f.get_tensor(key).dtype == torch.float8_e4m3fn and "scaled_fp8" in f.keys()
        expected = f.get_tensor(key).float() * f.get_tensor("blocks.0.self_attn.q.scale_weight").float()
    got = loaded.transformer.blocks[0].attn1.to_q.weight
    assert torch.equal(got, expected)
    # Into bf16 (in place on the bf16 copy, no fp32 temporary): the float32 product rounded once.
    in_bf16 = load_wan_model(base, **BF16, **paths).transformer.blocks[0].attn1.to_q.weight
    assert in_bf16.dtype == torch.bfloat16 and torch.equal(in_bf16, expected.to(torch.bfloat16))
    original = ref.transformer.blocks[0].attn1.to_q.weight
    assert (got - original).abs().max() <= original.abs().max() / 8  # fp8 e4m3 keeps 3 mantissa bits
    with safe_open(paths["text_encoder_path"], "pt") as f:
        assert f.get_tensor("scaled_fp8").numel() == 0  # text encoders: scale_input style
        key = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
        expected_te = f.get_tensor(key).float() * f.get_tensor(key.replace(".weight", ".scale_weight")).float()
    assert torch.equal(loaded.text_encoder.encoder.block[0].layer[1].DenseReluDense.wi_0.weight, expected_te)
    # fp8 storage: block matrices stay fp8 (the file's own bytes for unscaled fp8), the rest bf16.
    fp8 = load_wan_model(
        base,
        transformer_dtype=torch.float8_e4m3fn,
        text_encoder_dtype=torch.float32,
        vae_dtype=torch.float32,
        transformer_path=write_single_file(
            tmp_path / "fp8_high_noise.safetensors",
            ref.transformer,
            "transformer",
            naming="original",
            dtype=torch.float8_e4m3fn,
        ),
        transformer_2_path=paths["transformer_2_path"],
    )
    q = fp8.transformer.blocks[0].attn1.to_q.weight
    assert q.dtype == torch.float8_e4m3fn and torch.equal(
        q, ref.transformer.blocks[0].attn1.to_q.weight.to(torch.float8_e4m3fn)
    )
    assert fp8.transformer.patch_embedding.weight.dtype == torch.bfloat16


# ---- errors ----------------------------------------------------------------------------------------


def expect_error(*parts, **kwargs):
    with pytest.raises(ModelLoadError) as info:
        load_wan_model(**kwargs)
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in: {message}"
    return message


def test_errors(tiny_model_dir, tmp_path):
    t2v, ti2v = tiny_model_dir("T2V-A14B"), tiny_model_dir("TI2V-5B")
    ref = load_wan_model(t2v, **F32)
    ref5 = load_wan_model(ti2v, **F32)
    paths = write_parts(ref, tmp_path, "comfy_plain", torch.bfloat16)
    # WAN 2.1: by file name, and by a CLIP image embedding (Wan2.1 I2V).
    wan21 = write_single_file(
        tmp_path / "wan2.1_t2v_14B_bf16.safetensors", ref.transformer, "transformer", naming="original"
    )
    expect_error("WAN 2.1", "WAN 2.2 is needed", str(wan21), model_path=t2v, transformer_path=wan21)
    # A VAE that does not fit the transformer.
    vae22 = write_single_file(tmp_path / "wan2.2_vae.safetensors", ref5.vae, "vae", naming="original")
    expect_error("does not fit the T2V-A14B transformer", "Wan2.2 VAE", "wan_2.1_vae", model_path=t2v, vae_path=vae22)
    # A missing part: the low-noise expert of an A14B model given no source.
    expect_error(
        "missing part",
        "low-noise expert",
        "model.transformer_2_path",
        model_path=None,
        transformer_path=paths["transformer_path"],
    )
    # Swapped experts.
    expect_error(
        "swapped experts",
        "model.transformer_2_path",
        model_path=t2v,
        transformer_path=paths["transformer_2_path"],
        transformer_2_path=paths["transformer_path"],
    )
    # A wrong text encoder: T5 (relative bias only in block 0), and a CLIP file.
    t5 = {
        k: v
        for k, v in ref.text_encoder.state_dict().items()
        if not ("relative_attention_bias" in k and ".block.0." not in k)
    }
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in t5.items() if k != "encoder.embed_tokens.weight"},
        str(tmp_path / "t5xxl_fp16.safetensors"),
    )
    expect_error("T5, not UMT5", "umt5", model_path=t2v, text_encoder_path=tmp_path / "t5xxl_fp16.safetensors")
    save_file({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(4, 4)}, str(tmp_path / "clip_l.safetensors"))
    expect_error("not UMT5", model_path=t2v, text_encoder_path=tmp_path / "clip_l.safetensors")
    # Truncated and corrupt safetensors.
    broken = tmp_path / "cut_high_noise.safetensors"
    broken.write_bytes(paths["transformer_path"].read_bytes()[:-10])
    expect_error("truncated", str(broken), "re-download", model_path=t2v, transformer_path=broken)
    garbage = tmp_path / "garbage_high_noise.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    expect_error("not JSON", str(garbage), model_path=t2v, transformer_path=garbage)
    # Unsupported formats.
    gguf = tmp_path / "wan2.2_t2v_high_noise_14B_Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF")
    expect_error("unsupported format", "GGUF", ".safetensors", model_path=t2v, transformer_path=gguf)
    save_file(
        {"model.layers.0.weight": torch.zeros(2, 2), "foo.bar": torch.zeros(2)}, str(tmp_path / "other.safetensors")
    )
    expect_error("unsupported format", model_path=t2v, transformer_path=tmp_path / "other.safetensors")
    # A file that does not fit the config it is loaded with (5B transformer into the T2V folder's config).
    five = write_single_file(tmp_path / "ti2v_5B.safetensors", ref5.transformer, "transformer", naming="original")
    expect_error(
        "mismatched experts", model_path=t2v, transformer_path=five, transformer_2_path=paths["transformer_2_path"]
    )
    # A .pth that torch.load(weights_only=True) cannot read safely.
    bad_pth = tmp_path / "Wan2.1_VAE.pth"
    bad_pth.write_bytes(b"not a zip")
    expect_error("cannot load the vae .pth file safely", "weights_only", model_path=t2v, vae_path=bad_pth)
    # No tokenizer without a base folder.
    expect_error("missing part", "tokenizer", model_path=None, **paths)
