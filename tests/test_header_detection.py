"""Detection on files with the real names and shapes of the public WAN 2.2 single files, from the header alone.

The files are sparse: a real safetensors header (names, dtypes, shapes of the real model, built from the
configs shipped in resources/model_configs on the meta device) and a data region of the real size that the
file system never stores. Each is recognised in well under a second, which reading 28 GB could not be.
"""

from __future__ import annotations

import time

import pytest
import torch

from modules.base.model_loader import ModelLoadError
from modules.util.resources import MODEL_CONFIGS_DIR as CONFIGS_DIR
from modules.wan.loading.detection import read_json
from modules.wan.loading.part_load import build_empty, check_file_fits
from modules.wan.loading.single_file_writer import single_file_state_dict, write_header_only

# (file name, part, config, layout, expected variant / z_dim, dtype, fp8 scaled, expert)
PUBLIC_FILES = [
    (
        "wan2.2_t2v_high_noise_14B_fp16.safetensors",
        "transformer",
        "transformer_T2V-A14B.json",
        dict(naming="original", dtype=torch.float16),
        "T2V-A14B",
        "fp16",
        False,
        "high_noise",
    ),
    (
        "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
        "transformer",
        "transformer_T2V-A14B.json",
        dict(naming="original", dtype=torch.bfloat16, fp8_scaled=True),
        "T2V-A14B",
        "fp8_e4m3fn",
        True,
        "low_noise",
    ),
    (
        "wan2.2_i2v_high_noise_14B_fp16.safetensors",
        "transformer",
        "transformer_I2V-A14B.json",
        dict(naming="original", prefix="model.diffusion_model.", dtype=torch.float16),
        "I2V-A14B",
        "fp16",
        False,
        "high_noise",
    ),
    (
        "wan2.2_i2v_low_noise_14B_fp16.safetensors",
        "transformer",
        "transformer_I2V-A14B.json",
        dict(naming="original", dtype=torch.float16),
        "I2V-A14B",
        "fp16",
        False,
        "low_noise",
    ),
    (
        "wan2.2_ti2v_5B_fp16.safetensors",
        "transformer",
        "transformer_TI2V-5B.json",
        dict(naming="original", dtype=torch.float16),
        "TI2V-5B",
        "fp16",
        False,
        None,
    ),
    (
        "wan_2.1_vae.safetensors",
        "vae",
        "vae_wan2.1.json",
        dict(naming="original", dtype=torch.bfloat16),
        16,
        "bf16",
        False,
        None,
    ),
    (
        "wan2.2_vae.safetensors",
        "vae",
        "vae_wan2.2.json",
        dict(naming="original", dtype=torch.bfloat16),
        48,
        "bf16",
        False,
        None,
    ),
    (
        "umt5_xxl_fp16.safetensors",
        "text_encoder",
        "text_encoder_umt5-xxl.json",
        dict(naming="diffusers", dtype=torch.float16),
        None,
        "fp16",
        False,
        None,
    ),
    (
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "text_encoder",
        "text_encoder_umt5-xxl.json",
        dict(naming="diffusers", dtype=torch.bfloat16, fp8_scaled=True),
        None,
        "fp8_e4m3fn",
        True,
        None,
    ),
]


def real_shaped_file(tmp_path, name, part, config_name, layout):
    config = read_json(CONFIGS_DIR / config_name)
    module = build_empty(part, config)  # the real model's shapes, no memory
    state = single_file_state_dict(module, part, config=config, **layout)
    return write_header_only(tmp_path / name, {k: (v.dtype, tuple(v.shape)) for k, v in state.items()}), config, module


@pytest.mark.parametrize(
    "name,part,config_name,layout,expected,dtype,scaled,expert", PUBLIC_FILES, ids=[f[0] for f in PUBLIC_FILES]
)
def test_public_files_are_recognised_from_the_header(
    tmp_path, name, part, config_name, layout, expected, dtype, scaled, expert
):
    path, config, module = real_shaped_file(tmp_path, name, part, config_name, layout)
    assert path.stat().st_blocks * 512 < 4 << 20  # sparse: no data on disk to read
    start = time.perf_counter()
    info = check_file_fits(path, config)  # detection + every name and shape against the shipped config
    elapsed = time.perf_counter() - start
    assert info.part == part and info.dtype == dtype and info.fp8_scaled is scaled and info.expert == expert
    if part == "transformer":
        assert info.variant.name == expected
        assert info.prefix == layout.get("prefix", "")
    elif part == "vae":
        assert info.z_dim == expected
    assert elapsed < 5.0, elapsed  # building the meta model dominates; no tensor data is read
    size = path.stat().st_size
    params = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    # Public facts: ~14.3B parameters per A14B expert (28.6 GB in fp16), ~5B for TI2V-5B, ~5.7B for UMT5-XXL.
    if part == "transformer":
        low, high = (13.5e9, 15.0e9) if "14B" in name else (4.5e9, 5.5e9)
        assert low < params < high
        if dtype == "fp16":
            assert abs(size - 2 * params) < 1 << 20
    if part == "text_encoder":
        assert 5.5e9 < params < 5.9e9


def test_detection_reads_only_the_header(tmp_path):
    """Cutting the data region off makes the file truncated: detection says so, naming the sizes."""
    path, _, _ = real_shaped_file(
        tmp_path,
        "wan2.2_ti2v_5B_fp16.safetensors",
        "transformer",
        "transformer_TI2V-5B.json",
        dict(naming="original", dtype=torch.float16),
    )
    full = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(full - 1)
    with pytest.raises(ModelLoadError) as info:
        check_file_fits(path, read_json(CONFIGS_DIR / "transformer_TI2V-5B.json"))
    assert "truncated" in str(info.value) and str(full) in str(info.value) and "re-download" in str(info.value)


def test_a_file_does_not_fit_another_models_config(tmp_path):
    path, _, _ = real_shaped_file(
        tmp_path,
        "wan2.2_ti2v_5B_fp16.safetensors",
        "transformer",
        "transformer_TI2V-5B.json",
        dict(naming="original", dtype=torch.float16),
    )
    with pytest.raises(ModelLoadError) as info:
        check_file_fits(path, read_json(CONFIGS_DIR / "transformer_T2V-A14B.json"))
    message = str(info.value)
    assert "does not fit its config" in message and "of another shape" in message and "Fix:" in message
