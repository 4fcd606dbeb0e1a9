"""scripts/gpu_acceptance.py: its stage list, time estimates and skip decisions, results on disk after every
stage, and one real --device cpu --tiny run of its plumbing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modules.benchmark.acceptance import DEFAULT_BUDGET_S, STAGES, AcceptanceReport, run_stages, skip_reason

REPO = Path(__file__).resolve().parent.parent


def test_stages_come_in_the_issued_order_of_value():
    assert [s.key for s in STAGES] == [
        "environment",
        "cpu_vs_device",
        "presets",
        "layers_and_swap",
        "real_5b",
        "real_a14b",
        "a14b_24gb_cap",
    ]
    assert all(s.gpu_s > 0 for s in STAGES)
    # On a GPU the most valuable stages fit the default budget; the estimates say how far down the list it gets.
    spent, fitted = 0.0, []
    for stage in STAGES:
        if spent + stage.gpu_s <= DEFAULT_BUDGET_S:
            spent += stage.gpu_s
            fitted.append(stage.key)
    assert fitted[:5] == ["environment", "cpu_vs_device", "presets", "layers_and_swap", "real_5b"]
    # The CPU plumbing run's estimates stay well inside CI's two minutes.
    assert sum(s.tiny_s for s in STAGES) <= 100


def test_skip_reasons():
    by_key = {s.key: s for s in STAGES}
    assert skip_reason(by_key["presets"], 1000, on_gpu=True, tiny=False) is None
    assert "needs ~150 s, 100 s" in skip_reason(by_key["presets"], 100, on_gpu=True, tiny=False)
    assert "CUDA" in skip_reason(by_key["a14b_24gb_cap"], 1000, on_gpu=False, tiny=True)
    assert "no --tiny form" in skip_reason(by_key["real_a14b"], 1000, on_gpu=False, tiny=True)
    assert "--tiny" in skip_reason(by_key["presets"], 1000, on_gpu=False, tiny=False)
    assert skip_reason(by_key["presets"], 40, on_gpu=False, tiny=True) is None  # tiny estimate 35 s
    assert "needs ~35 s" in skip_reason(by_key["presets"], 20, on_gpu=False, tiny=True)


def test_results_are_on_disk_after_every_stage_and_a_broken_stage_is_a_row(tmp_path):
    report = AcceptanceReport(out_dir=tmp_path, device="cpu", tiny=True, budget_s=60)
    seen = []

    def second():  # by now the first stage's entry must be written
        seen.append([s["key"] for s in json.loads(report.json_path.read_text())["stages"]])
        raise RuntimeError("device lost")

    runners = {
        "environment": lambda: {"summary": "fine"},
        "cpu_vs_device": second,
        "presets": lambda: {"summary": "never runs: 35 s do not fit"},
        "layers_and_swap": lambda: {"status": "failed", "summary": "swap bit-equal: False"},
    }
    lines = []
    # 20 s left: presets (35 s) and real_5b (25 s) do not fit, layers_and_swap (10 s) does; the last two have no
    # CPU form.
    run_stages(report, runners, on_gpu=False, deadline=time.monotonic() + 20, say=lines.append)
    assert seen == [["environment"]]
    stages = {s["key"]: s for s in json.loads(report.json_path.read_text())["stages"]}
    assert list(stages) == [s.key for s in STAGES]
    assert stages["environment"]["status"] == "ok" and stages["cpu_vs_device"]["status"] == "error"
    assert "device lost" in stages["cpu_vs_device"]["error"]
    assert stages["presets"]["status"] == "skipped" and "needs ~35 s" in stages["presets"]["reason"]
    assert stages["layers_and_swap"]["status"] == "failed"
    assert stages["real_5b"]["status"] == "skipped" and "needs ~25 s" in stages["real_5b"]["reason"]
    assert any("~8 s" in line for line in lines)  # the estimate is printed before the stage
    markdown = report.markdown_path.read_text()
    assert "| cpu_vs_device | error |" in markdown and "| real_5b | skipped |" in markdown


@pytest.mark.slow
def test_the_cpu_tiny_run_writes_both_files(tmp_path):
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "scripts/gpu_acceptance.py", "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - start
    document = json.loads((tmp_path / "gpu_acceptance.json").read_text())
    assert (tmp_path / "gpu_acceptance.md").read_text().startswith("# GPU acceptance run")
    stages = {s["key"]: s for s in document["stages"]}
    assert list(stages) == [s.key for s in STAGES], run.stdout[-3000:]
    problems = {
        k: s.get("summary") or s.get("error") for k, s in stages.items() if s["status"] not in ("ok", "skipped")
    }
    assert not problems and run.returncode == 0, (problems, run.stdout[-3000:], run.stderr[-3000:])
    assert stages["cpu_vs_device"]["float32"]["worst_gradient_relative"] == 0.0  # the CPU against itself
    assert stages["layers_and_swap"]["swap"]["bit_equal"]
    assert stages["a14b_24gb_cap"]["status"] == "skipped"
    assert not list(REPO.joinpath("docs", "benchmarks").glob("gpu_acceptance*"))  # nothing written into the repo
    print(f"--device cpu --tiny took {seconds:.0f} s")
