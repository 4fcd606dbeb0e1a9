"""scripts/diagnose.py on this machine (no GPU: the report says so) with a config on the tiny T2V-A14B model: its
JSON passes the report schema (jsonschema if installed, else the hand-written check), the model parts are the ones
detection finds in the folder, and the memory verdict is the planner's. The schema check itself rejects a report
with a missing key or a wrong type."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modules.trainer.reporting.diagnostics import NO_GPU, REPORT_SCHEMA, _check, format_report, validate_report

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tiny_model_dir, tmp_path_factory):
    folder = tiny_model_dir("T2V-A14B")
    command = [
        sys.executable,
        str(REPO / "scripts" / "diagnose.py"),
        "--config-path",
        str(REPO / "training_presets" / "demo_t2v_a14b_lora.json"),
        "--config-value",
        f"model.base_path={folder}",
        "--json",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), folder


def test_report_passes_the_schema(report):
    data, _ = report
    assert validate_report(data) == []
    assert _check(data, REPORT_SCHEMA, "report") == []  # the fallback agrees when jsonschema is installed too


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_report_says_there_is_no_gpu(report):
    data, _ = report
    assert data["gpus"] == [] and data["gpu_summary"] == NO_GPU
    assert data["torch"]["accelerator_available"] is False and data["torch"]["version"] == torch.__version__
    assert "no GPU found" in format_report(data) and "no GPU" in data["memory_plan"]["verdict"]


def test_parts_are_what_detection_finds_in_the_folder(report):
    from modules.wan.loading.detection import detect_variant

    data, folder = report
    parts = {p["part"]: p for p in data["model_parts"]}
    assert set(parts) == {"transformer", "transformer_2", "vae", "text_encoder"}
    assert all("error" not in p for p in parts.values()), parts
    assert parts["transformer"]["variant"] == detect_variant(folder).name == "T2V-A14B"
    assert (parts["transformer"]["expert"], parts["transformer_2"]["expert"]) == ("high_noise", "low_noise")
    # make_tiny_models writes float32 safetensors with diffusers names
    assert {p["dtype"] for p in parts.values()} == {"fp32"} and {p["naming"] for p in parts.values()} == {"diffusers"}
    assert parts["vae"]["source"] == str(folder / "vae")


def test_memory_verdict_is_the_planners(report, tiny_model_dir):
    from modules.config.loading import load_config
    from modules.planning import plan_memory

    data, folder = report
    config = load_config(REPO / "training_presets" / "demo_t2v_a14b_lora.json", [f"model.base_path={folder}"])
    plan = plan_memory(config)
    assert data["memory_plan"]["peak_gib"] == round(plan.peak_gib, 3)
    assert data["memory_plan"]["verdict"] == plan.verdict(None)


def test_schema_check_rejects_missing_keys_and_wrong_types(report):
    data, _ = report
    broken = copy.deepcopy(data)
    del broken["ffmpeg"]
    broken["gpus"] = [{"index": "0", "name": "x", "memory_gib": 1.0, "compute_capability": None, "gfx_target": None}]
    for problems in (validate_report(broken), _check(broken, REPORT_SCHEMA, "report")):
        assert len(problems) == 2, problems
        assert any("ffmpeg" in p for p in problems) and any("gpus/0/index" in p for p in problems), problems
