"""Every preset in training_presets/ loads and validates; the real-model presets name the right hub repo and
variant, one per GPU tier (16, 24, 32, 48 and 80 GB) per model, and the memory planner (modules/planning.py)
says each fits its tier; the demo presets point at the tiny models that scripts/make_tiny_models.py writes. What
each preset assumes is documented in docs/presets.md."""

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


TIERS = (16, 24, 32, 48, 80)


def test_every_model_has_a_preset_per_gpu_tier():
    found = {(variant_of(m["variant"]), int(m["card"])) for m in map(REAL.match, (p.name for p in real_presets()))}
    assert found == {(v, card) for v in VARIANTS for card in TIERS}


@pytest.mark.parametrize("path", real_presets(), ids=lambda p: p.name)
def test_real_preset_names_the_wan_ai_repo_of_its_variant(path):
    config = load_config(path)
    variant = VARIANTS[config.model.variant]
    assert config.model.base_path == variant.real_repo_id
    assert re.fullmatch(r"Wan-AI/Wan2\.2-(TI2V-5B|T2V-A14B|I2V-A14B)-Diffusers", config.model.base_path)
    assert not config.model.allow_download  # a download of tens of GB only when the user asks for it
    # Settings every real preset relies on for its memory budget (docs/presets.md).
    # (A14B up to 32 GB stores the frozen expert in fp8: one expert in bf16 is 26.7 GiB.)
    card = int(REAL.match(path.name)["card"])
    fp8 = variant.has_transformer_2 and card <= 32
    assert (
        config.model.transformer_dtype == ("float8_e4m3fn" if fp8 else "bfloat16")
        and config.training.train_dtype == "bfloat16"
    )
    assert config.training.gradient_checkpointing and config.training.batch_size == 1
    if variant.has_transformer_2:
        assert config.experts.train == "both" and config.experts.offload_inactive_expert


@pytest.mark.parametrize("path", real_presets(), ids=lambda p: p.name)
def test_real_preset_fits_its_tier_by_the_memory_planner(path):
    from modules.planning import plan_memory

    config = load_config(path)
    card = int(REAL.match(path.name)["card"])
    plan = plan_memory(config, card)
    assert plan.fits(card), plan.table()
    assert plan.verdict(card).startswith(f"fits a {card} GB card")


@pytest.mark.parametrize("variant_name", ["t2v_a14b", "i2v_a14b"])
def test_a14b_24gb_presets_train_832x480x81_with_fp8_and_block_swapping(variant_name):
    from modules.data.clips.buckets import resolution_bucket

    config = load_config(REPO / "training_presets" / f"wan22_{variant_name}_lora_24gb.json")
    variant = VARIANTS[config.model.variant]
    # A 16:9-ish 832x480 clip lands in the 832x480 bucket at this resolution, all 81 frames.
    assert resolution_bucket(832, 480, config.data.resolution**2, variant.pixel_multiple) == (832, 480)
    assert config.data.frames == 81
    assert config.model.transformer_dtype == "float8_e4m3fn" and config.memory.blocks_to_swap > 0
    (sample,) = config.sampling.samples
    assert (sample.width, sample.height, sample.frames) == (832, 480, 81)
    assert bool(sample.start_image) == (variant.image_conditioning == "channel_concat")


@pytest.mark.parametrize("path", [p for p in PRESETS if DEMO.match(p.name)], ids=lambda p: p.name)
def test_demo_preset_uses_the_tiny_model_folder_of_its_variant(path):
    config = load_config(path)
    assert config.model.base_path == f"workspace/demo/models/{config.model.variant}"
    assert config.data.concepts[0].path == "workspace/demo/data"
