"""Every GPU-only memory decision, taken on this CPU machine as if a GPU of 16, 24 or 48 GiB were present
(WAN_TRAINER_PRETEND_GPU_GIB, read by modules/util/device.py gpu_capacity_gib).

The full product of every real preset's settings (at tiny size) x every optimizer x each GPU size goes through
what a CUDA run decides: the data loader's memory.vae_tiling=auto, the run-start fit warning, the out-of-memory
advice, the window's verdict and diagnostics.json's plan; none may raise or report a failed plan. A few real
2-step runs then take those branches end to end. Before this, the data loader's plan stopped every optimizer but
adamw/adamw_8bit with KeyError, and a hub id with model.variant=auto with PlanInputError, once a GPU was found.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from modules.benchmark.preset_smoke import shrink_preset
from modules.config.loading import config_from_dict
from modules.config.optimizer_config import OPTIMIZERS
from modules.planning import model_facts, plan_memory
from modules.trainer.guards.oom import planner_advice
from modules.trainer.reporting.diagnostics import collect_report, memory_plan_entry, validate_report
from modules.trainer.reporting.run_start import warn_if_plan_does_not_fit
from modules.ui import memory_hint
from modules.util.device import PRETEND_GPU_ENV, gpu_capacity_gib
from modules.wan.memory_facts import PlanInputError, memory_facts
from modules.wan.vae_tiling import configure_vae_tiling
from modules.wan.variants import VARIANTS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted((REPO / "training_presets").glob("wan22_*.json"))
TIERS = (16, 24, 48)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_models(tiny_model_dir):
    """One loaded tiny model per variant, shared by every combination."""
    from modules.wan.loading.loader import load_wan_model

    return {
        name: load_wan_model(
            tiny_model_dir(name),
            transformer_dtype=torch.float32,
            text_encoder_dtype=torch.float32,
            vae_dtype=torch.float32,
        )
        for name in ("TI2V-5B", "T2V-A14B", "I2V-A14B")
    }


@pytest.fixture(scope="module")
def preset_configs(tiny_models, demo_data_dir, tmp_path_factory):
    """preset name -> (its settings at tiny size as a dict, its variant)."""
    root = tmp_path_factory.mktemp("cpu_as_gpu")
    start_image = next(demo_data_dir.glob("*.png"))
    shrunk = {}
    for path in PRESETS:
        data = json.loads(path.read_text(encoding="utf-8"))
        variant = data["model"]["variant"]
        model_path = tiny_models[variant].model_path
        shrunk[path.name] = (shrink_preset(data, model_path, demo_data_dir, start_image, root / path.stem), variant)
    return shrunk


def test_pretend_gpu_size_is_the_one_capacity_query(monkeypatch):
    monkeypatch.delenv(PRETEND_GPU_ENV, raising=False)
    assert gpu_capacity_gib(CPU) is None  # no GPU on a CPU device
    monkeypatch.setenv(PRETEND_GPU_ENV, "24")
    assert gpu_capacity_gib(CPU) == 24.0 and gpu_capacity_gib() == 24.0
    memory_hint.gpu_memory_gib.cache_clear()
    try:
        assert memory_hint.gpu_memory_gib() == 24.0
    finally:
        memory_hint.gpu_memory_gib.cache_clear()
    monkeypatch.setenv(PRETEND_GPU_ENV, "lots")
    from modules.util.errors import UserError

    with pytest.raises(UserError, match=PRETEND_GPU_ENV):
        gpu_capacity_gib(CPU)


def test_loaded_model_facts_equal_the_folder_facts(tiny_models, preset_configs):
    """The facts the loaded model gives are those of its folder's configs (one source of truth, two routes)."""
    for data, variant in preset_configs.values():
        config = config_from_dict(data)
        assert tiny_models[variant].memory_facts() == memory_facts(config)


def test_a_hub_id_with_variant_auto_plans_from_the_loaded_model(tiny_models, demo_data_dir, monkeypatch):
    model = tiny_models["TI2V-5B"]
    config = config_from_dict(
        {
            "model": {"base_path": VARIANTS["TI2V-5B"].real_repo_id, "variant": "auto"},
            "data": {"concepts": [{"path": str(demo_data_dir)}]},
        }
    )
    with pytest.raises(PlanInputError):  # before loading, the config alone cannot tell the model
        plan_memory(config)
    monkeypatch.setenv(PRETEND_GPU_ENV, "16")
    facts = model_facts(config, model)
    assert facts.name == "TI2V-5B"
    configure_vae_tiling(model, config, CPU)  # the data loader's call: no PlanInputError once loaded
    assert "no plan" not in planner_advice(config, CPU, model)


@pytest.mark.parametrize("tier", TIERS)
def test_every_preset_and_optimizer_takes_the_gpu_branches(tier, tiny_models, preset_configs, monkeypatch, caplog):
    monkeypatch.setenv(PRETEND_GPU_ENV, str(tier))
    memory_hint.gpu_memory_gib.cache_clear()
    failures = []
    try:
        for preset, (data, variant) in preset_configs.items():
            model = tiny_models[variant]
            for optimizer in OPTIMIZERS:
                data["training"]["optimizer"] = optimizer
                config = config_from_dict(data)
                where = f"{preset} x {optimizer} x {tier} GiB"
                tiled = configure_vae_tiling(model, config, CPU)  # the data loader's memory.vae_tiling decision
                plan = plan_memory(config, tier, model_facts(config, model))
                if tiled != plan.vae_tiled:
                    failures.append(f"{where}: the data loader tiled={tiled}, the plan for the GPU {plan.vae_tiled}")
                advice = planner_advice(config, CPU, model)  # the out-of-memory message's advice
                hint = memory_hint.memory_hint(config)  # the window's verdict
                entry = memory_plan_entry(config, gpu_capacity_gib(CPU))  # diagnostics.json's plan
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="wan_trainer"):
                    warn_if_plan_does_not_fit(SimpleNamespace(device=CPU, config=config), {})
                if advice.startswith("no plan") or "error" in entry or entry["gpu_memory_gib"] != tier:
                    failures.append(f"{where}: advice={advice!r} diagnostics={entry.get('error')}")
                if f"(GPU: {tier} GiB)" not in hint:  # also fails on "memory estimate failed"
                    failures.append(f"{where}: the window did not plan for the {tier} GiB GPU: {hint!r}")
                # The run-start warning appears exactly when the plan does not fit this GPU.
                warned = [r.getMessage() for r in caplog.records]
                if any("memory plan: this run" in m for m in warned) != (not plan.fits(tier)) or any(
                    "no memory plan" in m for m in warned
                ):
                    failures.append(f"{where}: run-start warnings {warned} (plan fits: {plan.fits(tier)})")
    finally:
        memory_hint.gpu_memory_gib.cache_clear()
    assert not failures, "\n".join(failures[:20])


def test_diagnostics_report_plans_for_the_pretended_gpu(preset_configs, monkeypatch):
    monkeypatch.setenv(PRETEND_GPU_ENV, "24")
    data, _ = preset_configs["wan22_t2v_a14b_lora_24gb.json"]
    report = collect_report(config_from_dict(data), probe_bitsandbytes=False)
    assert validate_report(report) == []
    assert report["memory_plan"]["gpu_memory_gib"] == 24.0 and "error" not in report["memory_plan"]
    assert "24 GB card" in report["memory_plan"]["verdict"]


# A few real runs through the trainer: one per variant, each with an optimizer the old plan did not know.
RUNS = [
    ("wan22_ti2v_5b_lora_16gb.json", "prodigy", 16),
    ("wan22_t2v_a14b_lora_24gb.json", "came", 24),
    ("wan22_i2v_a14b_lora_48gb.json", "schedule_free_adamw", 48),
]


@pytest.mark.parametrize(("preset", "optimizer", "tier"), RUNS)
def test_two_real_steps_take_the_gpu_branches(preset, optimizer, tier, preset_configs, tmp_path, monkeypatch, caplog):
    from modules.benchmark.preset_smoke import adapt_to_device, ensure_one_sample, run_smoke

    monkeypatch.setenv(PRETEND_GPU_ENV, str(tier))
    data, variant = preset_configs[preset]
    data = json.loads(json.dumps(data))
    data["training"].update(optimizer=optimizer, device="cpu")
    data["output"]["workspace_dir"] = str(tmp_path / "run")
    start_image = next(Path(data["data"]["concepts"][0]["path"]).glob("*.png"))
    replaced = adapt_to_device(data, CPU) + ensure_one_sample(data, VARIANTS[variant].image_conditioning, start_image)
    with caplog.at_level(logging.WARNING):
        result = run_smoke(REPO / "training_presets" / preset, data, replaced)
    assert result.status == "ok", result.error
    assert not any(r.exc_info for r in caplog.records), "a logged traceback"
    assert not any("no memory plan" in r.getMessage() for r in caplog.records)
    report = json.loads((tmp_path / "run" / "diagnostics.json").read_text())
    assert report["memory_plan"]["gpu_memory_gib"] == tier and "error" not in report["memory_plan"]
