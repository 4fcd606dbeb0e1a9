"""scripts/benchmark.py: the FLOP formula against PyTorch's FLOP counter, the results file against its schema,
regression checks, out-of-memory rows, and compiled blocks against eager steps."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from modules.benchmark import results
from modules.benchmark.flops import TransformerShape, training_step_flops
from modules.module.lora import attach_lora
from modules.wan.tiny_models import build_transformer
from modules.wan.variants import VARIANTS

REPO = Path(__file__).resolve().parent.parent
BENCHMARK = REPO / "scripts" / "benchmark.py"


def counted_step(variant_name: str, method: str, checkpointing: bool) -> tuple[int, int, TransformerShape]:
    """FLOPs PyTorch counts in one forward and one backward of a tiny transformer."""
    variant = VARIANTS[variant_name]
    torch.manual_seed(0)
    transformer = build_transformer(variant, num_layers=2, heads=2, head_dim=32)
    transformer.requires_grad_(method == "full")
    if method == "lora":
        attach_lora(transformer, rank=4, alpha=4.0)
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    frames, height, width, text_tokens = 3, 8, 12, 32
    latents = torch.randn(1, transformer.config.in_channels, frames, height, width)
    text = torch.randn(1, text_tokens, transformer.config.text_dim)
    tokens = frames * (height // 2) * (width // 2)
    timestep = torch.full((1, tokens), 500.0) if variant.expand_timesteps else torch.tensor([500.0])
    # The math kernel is written in matmuls, which the counter sees; the fused CPU kernel is not counted.
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as forward_count:
            out = transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)
        with FlopCounterMode(display=False) as backward_count:
            out[0].float().pow(2).mean().backward()
    shape = TransformerShape.of(
        dict(transformer.config), (frames, height, width), text_tokens, variant.expand_timesteps
    )
    return forward_count.get_total_flops(), backward_count.get_total_flops(), shape


@pytest.mark.parametrize("variant_name", ["TI2V-5B", "T2V-A14B", "I2V-A14B"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_flop_formula_matches_the_flop_counter(variant_name, method, one_torch_thread):
    forward, backward, shape = counted_step(variant_name, method, checkpointing=False)
    formula = training_step_flops(shape, batch_size=1, method=method, lora_rank=4)
    assert formula.forward == pytest.approx(forward, rel=0.05)
    assert formula.backward == pytest.approx(backward, rel=0.05)
    assert formula.recompute == 0


def test_flop_formula_counts_checkpoint_recomputation_apart(one_torch_thread):
    forward, backward_with_recompute, shape = counted_step("T2V-A14B", "lora", checkpointing=True)
    formula = training_step_flops(shape, batch_size=2, method="lora", lora_rank=4, gradient_checkpointing=True)
    # Per sample x 2: the formula scales with the batch; the recomputation runs inside backward.
    assert formula.forward == pytest.approx(2 * forward, rel=0.05)
    assert formula.backward + formula.recompute == pytest.approx(2 * backward_with_recompute, rel=0.05)
    assert formula.recompute > 0 and formula.hardware == formula.model + formula.recompute


def run_benchmark(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARK), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("benchmark") / "tiny.json"
    run = run_benchmark("--tiny", "--device", "cpu", "--steps", "3", "--warmup", "1", "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "s/step" in run.stdout and "tokens/s" in run.stdout
    return out


def test_tiny_cpu_run_writes_results_that_fit_the_schema(tiny_results):
    document = json.loads(tiny_results.read_text())
    results.validate(document)  # raises on a missing or mistyped field
    (row,) = document["results"]
    assert row["status"] == "ok" and row["steady_steps"] == 2
    assert row["flops_per_step"]["model"] == row["flops_per_step"]["forward"] + row["flops_per_step"]["backward"]
    assert row["achieved_tflops"] == pytest.approx(row["flops_per_step"]["model"] / row["steady_s_median"] / 1e12)
    assert row["tokens_per_s"] == pytest.approx(row["tokens_per_sample"] / row["steady_s_median"])
    assert all(map(lambda loss: loss == loss, row["losses"]))  # finite: the random model trains
    assert document["machine"]["device"] == "cpu" and document["git_commit"]
    broken = copy.deepcopy(document)
    del broken["results"][0]["steady_s_median"]
    with pytest.raises(Exception, match="steady_s_median"):
        results.validate(broken)


def test_compare_passes_an_equal_baseline_and_flags_a_faster_one(tiny_results, tmp_path):
    document = json.loads(tiny_results.read_text())
    equal = run_benchmark("--results", str(tiny_results), "--compare", str(tiny_results))
    assert equal.returncode == 0, equal.stdout + equal.stderr
    assert "no regression" in equal.stdout
    faster = copy.deepcopy(document)
    faster["results"][0]["steady_s_median"] /= 1.10  # the baseline was 10% faster: today is a regression
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(faster))
    slower = run_benchmark("--results", str(tiny_results), "--compare", str(baseline))
    assert slower.returncode == 3, slower.stdout + slower.stderr
    assert "REGRESSION" in slower.stdout and document["results"][0]["name"] in slower.stdout
    within = run_benchmark("--results", str(tiny_results), "--compare", str(baseline), "--threshold", "0.2")
    assert within.returncode == 0


def test_an_out_of_memory_error_is_a_result_row_not_a_crash(tmp_path):
    out = tmp_path / "oom.json"
    run = run_benchmark(
        "--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--force-oom-at", "backward:1", "--json", str(out)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["status"] == "oom"
    assert row["error"] == "OOM in backward of block 1"
    assert "OOM in backward of block 1" in run.stdout


def test_compiled_blocks_give_the_eager_loss(one_torch_thread):
    """Regional compilation (inductor on CPU) trains the same steps as eager mode, within float32 tolerance."""
    from modules.benchmark.runner import Measure, run_configuration
    from modules.config.loading import config_from_dict

    rows = {}
    for mode in ("none", "blocks"):
        settings = {
            "model": {"variant": "T2V-A14B", "base_path": "<random>", "transformer_dtype": "float32"},
            "experts": {"train": "high_noise"},
            "data": {"concepts": [{"path": "<synthetic>"}], "frames": 5},
            "training": {"train_dtype": "float32", "device": "cpu", "compile": mode, "gradient_checkpointing": False},
            "sampling": {"samples": [], "sample_at_end": False},
            "output": {"tensorboard": False},
        }
        tiny = {"num_layers": 2, "heads": 2, "head_dim": 16}
        measure = Measure(steps=3, warmup=1, tiny=tiny, width=32, height=32)
        rows[mode] = run_configuration(mode, config_from_dict(settings), measure)
    assert rows["none"]["status"] == rows["blocks"]["status"] == "ok"
    # Same seeds, data and weights: every step's loss agrees to float32 kernel differences.
    assert rows["blocks"]["losses"] == pytest.approx(rows["none"]["losses"], rel=1e-4)
    assert rows["none"]["losses"][0] != rows["none"]["losses"][1]  # the steps really differ
