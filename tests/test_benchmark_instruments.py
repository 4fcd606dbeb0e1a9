"""The benchmark's instruments survive what a GPU run throws at them: the real-shape model is built in its target
dtype one block at a time, the default clip is the preset's bucket, a refused size or any exception is an error
row with the JSON written, a full fine-tune saves, and --compare matches rows by their full settings."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modules.benchmark import results
from modules.benchmark.runner import Measure, run_configuration
from modules.config.loading import config_from_dict
from modules.wan.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
BENCHMARK = REPO / "scripts" / "benchmark.py"
sys.path.insert(0, str(REPO / "scripts"))

import benchmark as benchmark_script  # noqa: E402


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARK), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("preset", sorted((REPO / "training_presets").glob("wan22_*.json")), ids=lambda p: p.stem)
def test_the_default_clip_is_the_presets_bucket(preset):
    data = json.loads(preset.read_text())
    width, height = benchmark_script.clip_size(data, tiny=False)
    multiple = VARIANTS[data["model"]["variant"]].pixel_multiple
    assert width % multiple == 0 and height % multiple == 0 and width > height
    # The bucket's area is the preset's resolution squared, within one pixel row's rounding.
    side = data["data"]["resolution"]
    assert abs(width * height - side * side) <= multiple * max(width, height)
    if data["data"]["resolution"] == 632:  # the A14B 24-80 GB presets document their clip as 832x480
        assert (width, height) == (832, 480)


def test_a_refused_clip_size_is_an_error_row_before_anything_is_built():
    config = config_from_dict(
        {
            "model": {"variant": "TI2V-5B", "base_path": "<random>", "transformer_dtype": "float32"},
            "data": {"concepts": [{"path": "<synthetic>"}], "frames": 9},
            "training": {"device": "cpu", "train_dtype": "float32"},
        }
    )
    row = run_configuration("bad size", config, Measure(steps=2, warmup=1, tiny={}, width=70, height=64))
    assert row["status"] == "error" and "multiple of 32" in row["error"] and "Fix" in row["error"]


@pytest.mark.slow  # one real TI2V-5B block initialised on the CPU
def test_real_shape_blocks_are_built_in_the_target_dtype_with_fp8_storage():
    from modules.module.fp8_linear import Fp8Linear
    from modules.wan.random_models import random_transformer

    transformer = random_transformer(
        "TI2V-5B", torch.device("cpu"), torch.bfloat16, fp8=True, host=torch.device("cpu"), num_layers=1
    )
    linears = [m for m in transformer.blocks.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(isinstance(m, Fp8Linear) for m in linears)
    assert transformer.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert transformer.proj_out.weight.dtype == torch.bfloat16
    assert transformer.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32  # kept in float32
    assert not any(p.dtype == torch.float32 and p.ndim >= 2 and "time_embedder" not in n
                   for n, p in transformer.named_parameters())  # fmt: skip
    assert all(torch.isfinite(t.float()).all() for t in [*transformer.parameters(), *transformer.buffers()])
    assert 0.015 < float(transformer.proj_out.weight.float().std()) < 0.025


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("benchmark") / "full.json"
    run = run_benchmark(
        "--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--set", "training_method=full",
        "--json", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


@pytest.mark.slow
def test_full_fine_tuning_runs_to_its_end_of_run_save(full_run):
    (row,) = json.loads(full_run.read_text())["results"]
    assert row["status"] == "ok", row.get("error")


@pytest.mark.slow
def test_compare_matches_rows_by_full_settings(full_run, tmp_path):
    document = json.loads(full_run.read_text())
    assert run_benchmark("--results", str(full_run), "--compare", str(full_run)).returncode == 0
    other = copy.deepcopy(document)
    other["results"][0]["settings"]["lora"] = {"rank": 64}  # same name, another setting: not the same measurement
    baseline = tmp_path / "other.json"
    baseline.write_text(json.dumps(other))
    assert results.matching_rows(document, other) == []
    run = run_benchmark("--results", str(full_run), "--compare", str(baseline))
    assert run.returncode == benchmark_script.NO_MATCH_EXIT_CODE and "NO MATCH" in run.stdout
