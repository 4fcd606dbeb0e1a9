"""Every preset in training_presets/ loads and validates; the real-model presets name the right hub repo and
variant, one for 24 GB and one for 48 GB cards per model; the demo presets point at the tiny models that
scripts/make_tiny_models.py writes. What each preset assumes is documented in docs/presets.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modules.config.loading import load_config
from modules.config.train_config import TrainConfig
from modules.wan.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "training_presets").glob("*.json"))
# wan22_<variant>_<method>_<card>gb.json, e.g. wan22_t2v_a14b_lora_24gb.json
REAL = re.compile(r"^wan22_(?P<variant>ti2v_5b|t2v_a14b|i2v_a14b)_(?P<method>lora)_(?P<card>\d+)gb\.json$")
DEMO = re.compile(r"^demo_(?P<variant>ti2v_5b|t2v_a14b|i2v_a14b)_(?P<method>lora|full|embedding)\.json$")


def variant_of(file_part: str) -> str:
    name = file_part.upper().replace("_", "-")  # t2v_a14b -> T2V-A14B
    assert name in VARIANTS, file_part
    return name


def real_presets() -> list[Path]:
    return [p for p in PRESETS if REAL.match(p.name)]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_loads_validates_and_follows_the_naming(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig)
    match = REAL.match(path.name) or DEMO.match(path.name)
    assert match, f"{path.name}: name presets wan22_<variant>_<method>_<N>gb.json or demo_<variant>_<method>.json"
    assert config.training_method == match["method"]
    variant = VARIANTS[variant_of(match["variant"])]
    assert config.model.variant == variant.name
    # Exact multiples, so nothing is silently rounded (the sampler would round down).
    for sample in config.sampling.samples:
        assert sample.width % variant.pixel_multiple == 0 and sample.height % variant.pixel_multiple == 0
        assert (sample.frames - 1) % 4 == 0
        assert bool(sample.start_image) == (variant.image_conditioning == "channel_concat")  # I2V-A14B needs one


def test_every_model_has_a_24gb_and_a_48gb_preset():
    found = {(variant_of(m["variant"]), int(m["card"])) for m in map(REAL.match, (p.name for p in real_presets()))}
    assert found == {(v, card) for v in VARIANTS for card in (24, 48)}


@pytest.mark.parametrize("path", real_presets(), ids=lambda p: p.name)
def test_real_preset_names_the_wan_ai_repo_of_its_variant(path):
    config = load_config(path)
    variant = VARIANTS[config.model.variant]
    assert config.model.base_path == variant.real_repo_id
    assert re.fullmatch(r"Wan-AI/Wan2\.2-(TI2V-5B|T2V-A14B|I2V-A14B)-Diffusers", config.model.base_path)
    assert not config.model.allow_download  # a download of tens of GB only when the user asks for it
    # Settings every real preset relies on for its memory budget (docs/presets.md).
    # (A14B on 24 GB stores the frozen expert in fp8: one expert in bf16 is 26.7 GiB.)
    fp8 = variant.has_transformer_2 and REAL.match(path.name)["card"] == "24"
    assert (
        config.model.transformer_dtype == ("float8_e4m3fn" if fp8 else "bfloat16")
        and config.training.train_dtype == "bfloat16"
    )
    assert config.training.gradient_checkpointing and config.training.batch_size == 1
    if variant.has_transformer_2:
        assert config.experts.train == "both" and config.experts.offload_inactive_expert


def resident_transformer_gib(variant: str, dtype: str) -> float:
    """One expert's weight memory built from the real config on the meta device: fp8 storage is one byte per block
    linear weight plus its float32 scale; everything else as a bf16 load (diffusers' float32 modules in float32)."""
    import json

    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    from modules.module.fp8_linear import fp8_storage_names

    config = json.loads((REPO / "resources" / "model_configs" / f"transformer_{variant}.json").read_text())
    with init_empty_weights():
        transformer = WanTransformer3DModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    fp8 = {f"{name}.weight" for name in fp8_storage_names(transformer)} if dtype == "float8_e4m3fn" else set()
    keep = transformer._keep_in_fp32_modules
    total = sum(
        p.numel() * (1 if n in fp8 else 4 if any(m in n.split(".") for m in keep) else 2)
        for n, p in transformer.named_parameters()
    )
    return (total + 4 * len(fp8)) / 2**30


@pytest.mark.parametrize("path", real_presets(), ids=lambda p: p.name)
def test_real_preset_leaves_room_for_training_beside_its_resident_transformer(path):
    config = load_config(path)
    card = int(REAL.match(path.name)["card"])
    weights = resident_transformer_gib(config.model.variant, config.model.transformer_dtype)
    # docs/presets.md: LoRA state, checkpointed activations, one recomputed block and CUDA context add 5.1 GiB at
    # the 24 GB presets' sizes; the 48 GB presets' larger clips add 12.0.
    assert weights + (5.1 if card == 24 else 12.0) <= card, weights


@pytest.mark.parametrize("path", [p for p in PRESETS if DEMO.match(p.name)], ids=lambda p: p.name)
def test_demo_preset_uses_the_tiny_model_folder_of_its_variant(path):
    config = load_config(path)
    assert config.model.base_path == f"workspace/demo/models/{config.model.variant}"
    assert config.data.concepts[0].path == "workspace/demo/data"
