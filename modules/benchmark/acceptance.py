"""The first-GPU acceptance run (scripts/gpu_acceptance.py): a fixed list of stages in order of value, each with a
time estimate, skipped with its reason when the budget left cannot hold it, and the results written (JSON and a
markdown summary) after every stage, so a run cut short still leaves what it found.

The stage list, estimates and skip decisions are plain data and functions (tests/test_gpu_acceptance.py checks
them); what each stage runs is in modules/benchmark/acceptance_checks.py and the scripts it calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from modules.util.atomic import atomic_write

DEFAULT_BUDGET_S = 540
RESULT_NAME = "gpu_acceptance"


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    gpu_s: float  # estimated seconds on one H100/H200-class GPU (a guess until the first run measures it)
    tiny_s: float  # estimated seconds of its --tiny form on a 2-core CPU; None-like 0 where it has none
    needs_cuda: bool = False  # no CPU form at all (memory caps need the CUDA allocator)


STAGES: tuple[Stage, ...] = (
    Stage("environment", "GPU, driver, torch/CUDA/ROCm, attention backend, bitsandbytes backend", 10, 3),
    Stage("cpu_vs_device", "one tiny training step on the CPU and on the device: loss and LoRA gradients", 20, 8),
    Stage("presets", "every real preset's settings at tiny size on the device (scripts/smoke_presets.py)", 150, 35),
    Stage("layers_and_swap", "fp8/int8/nf4 layers; block swapping bit-equal, its trace and copy overlap", 45, 10),
    Stage("real_5b", "TI2V-5B LoRA r32 at 832x480x81, eager then compile=blocks (scripts/benchmark.py)", 110, 25),
    Stage("real_a14b", "one A14B expert LoRA r64 at 832x480x81, eager then compile=blocks", 150, 0),
    Stage("a14b_24gb_cap", "A14B expert with the 24 GB preset's settings under a 24 GiB cap vs uncapped", 120, 0,
          needs_cuda=True),
)  # fmt: skip


def estimate_s(stage: Stage, on_gpu: bool, tiny: bool) -> float:
    return stage.tiny_s if (tiny or not on_gpu) else stage.gpu_s


def skip_reason(stage: Stage, budget_left_s: float, on_gpu: bool, tiny: bool) -> str | None:
    """Why `stage` is skipped, or None when it runs."""
    if stage.needs_cuda and not on_gpu:
        return "needs a CUDA/ROCm GPU (its memory cap is the CUDA allocator's)"
    if not on_gpu and not tiny:
        return "no GPU: run with --tiny for the plumbing on the CPU"
    if (tiny or not on_gpu) and not stage.tiny_s:
        return "full size only: no --tiny form"
    estimate = estimate_s(stage, on_gpu, tiny)
    if estimate > budget_left_s:
        return f"needs ~{estimate:.0f} s, {max(budget_left_s, 0):.0f} s of the budget left"
    return None


@dataclass
class AcceptanceReport:
    """Every stage's outcome, written to <out>/gpu_acceptance.json and .md after each stage."""

    out_dir: Path
    device: str
    tiny: bool
    budget_s: float
    started: float = field(default_factory=time.time)
    stages: list[dict] = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    @property
    def json_path(self) -> Path:
        return self.out_dir / f"{RESULT_NAME}.json"

    @property
    def markdown_path(self) -> Path:
        return self.out_dir / f"{RESULT_NAME}.md"

    def add(self, entry: dict) -> None:
        self.stages.append(entry)
        self.write()

    def document(self) -> dict:
        return {
            "device": self.device,
            "tiny": self.tiny,
            "budget_s": self.budget_s,
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "elapsed_s": round(time.time() - self.started, 1),
            "environment": self.environment,
            "stages": self.stages,
        }

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.document(), indent=2, default=str).encode("utf-8")
        atomic_write(self.json_path, lambda f: f.write(text))
        markdown = markdown_summary(self.document()).encode("utf-8")
        atomic_write(self.markdown_path, lambda f: f.write(markdown))


def markdown_summary(document: dict) -> str:
    env = document.get("environment") or {}
    lines = [
        f"# GPU acceptance run ({document['started_utc']})",
        "",
        f"device: {document['device']}{' (--tiny)' if document['tiny'] else ''}; budget {document['budget_s']:.0f} s, "
        f"{document['elapsed_s']:.0f} s used",
    ]
    if env:
        lines.append(f"GPU: {env.get('gpu_summary', '-')}; torch {env.get('torch', '-')}; "
                     f"bitsandbytes: {env.get('bitsandbytes', '-')}")  # fmt: skip
    lines += ["", "| stage | status | estimate s | took s | result |", "|---|---|---|---|---|"]
    for stage in document["stages"]:
        summary = stage.get("summary") or stage.get("reason") or stage.get("error") or ""
        took = f"{stage['seconds']:.1f}" if stage.get("seconds") is not None else "-"
        lines.append(
            f"| {stage['key']} | {stage['status']} | {stage['estimate_s']:.0f} | {took} | {summary.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def run_stages(
    report: AcceptanceReport,
    runners: dict[str, Callable[[], dict]],
    on_gpu: bool,
    deadline: float,
    say: Callable[[str], None] = print,
) -> None:
    """Run each stage of STAGES that has a runner, in order, within the deadline (time.monotonic())."""
    for stage in STAGES:
        left = deadline - time.monotonic()
        estimate = estimate_s(stage, on_gpu, report.tiny)
        entry = {"key": stage.key, "title": stage.title, "estimate_s": estimate, "seconds": None}
        reason = skip_reason(stage, left, on_gpu, report.tiny) or (None if stage.key in runners else "no runner")
        if reason:
            say(f"[{stage.key}] skipped: {reason}")
            report.add({**entry, "status": "skipped", "reason": reason})
            continue
        say(f"[{stage.key}] {stage.title}: ~{estimate:.0f} s ({left:.0f} s left)")
        start = time.monotonic()
        try:
            result = runners[stage.key]()
            status = result.pop("status", "ok")
            entry.update(status=status, **result)
        except Exception as error:  # noqa: BLE001 - a stage that breaks is a finding; the next stage still runs
            entry.update(status="error", error=f"{type(error).__name__}: {error}")
        entry["seconds"] = round(time.monotonic() - start, 2)
        outcome = entry.get("summary") or entry.get("error", "")
        say(f"[{stage.key}] {entry['status']} in {entry['seconds']:.1f} s: {outcome}")
        report.add(entry)
