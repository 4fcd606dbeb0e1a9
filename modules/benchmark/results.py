"""Benchmark result files: what machine and code produced them, their schema, and regression checks."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import torch

from modules.util.atomic import atomic_write

REPO = Path(__file__).resolve().parents[2]

_NUMBER_OR_NULL = {"type": ["number", "null"]}
ROW_SCHEMA = {
    "type": "object",
    "required": ["name", "status", "settings"],
    "properties": {
        "name": {"type": "string"},
        "status": {"enum": ["ok", "oom", "skipped", "error"]},
        "error": {"type": "string"},
        "settings": {"type": "object"},
        "memory_cap_gib": _NUMBER_OR_NULL,
        "warmup_s": {"type": "array", "items": {"type": "number"}},
        "steady_s_median": {"type": "number", "exclusiveMinimum": 0},
        "steady_s_min": {"type": "number"},
        "steady_s_max": {"type": "number"},
        "steady_steps": {"type": "integer", "minimum": 1},
        "tokens_per_s": {"type": "number"},
        "losses": {"type": "array", "items": {"type": "number"}},
        "flops_per_step": {
            "type": "object",
            "required": ["forward", "backward", "recompute", "model", "hardware"],
            "additionalProperties": {"type": "number"},
        },
        "achieved_tflops": {"type": "number"},
        "peak_tflops": _NUMBER_OR_NULL,
        "mfu": _NUMBER_OR_NULL,
        "peak_allocated_gib": _NUMBER_OR_NULL,
        "peak_reserved_gib": _NUMBER_OR_NULL,
        "host_peak_rss_gib": {"type": "number"},
    },
    # A finished row carries its measurements.
    "if": {"properties": {"status": {"const": "ok"}}},
    "then": {"required": ["steady_s_median", "tokens_per_s", "flops_per_step", "achieved_tflops", "mfu"]},
}
SCHEMA = {
    "type": "object",
    "required": ["machine", "versions", "git_commit", "results"],
    "properties": {
        "machine": {"type": "object", "required": ["device", "device_name", "cpu", "cpu_count"]},
        "versions": {"type": "object", "required": ["python", "torch"]},
        "git_commit": {"type": "string"},
        "attention": {"type": "object"},
        "results": {"type": "array", "items": ROW_SCHEMA},
    },
}


def machine_info(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": str(device),
        "device_name": name,
        "device_memory_gib": (
            torch.cuda.get_device_properties(device).total_memory / 1024**3 if device.type == "cuda" else None
        ),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def versions() -> dict:
    import diffusers
    import peft

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": torch.version.hip,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def attention_backends(device: torch.device) -> dict:
    """Which attention ran: PyTorch SDPA (its kernels as enabled here), and optional packages found."""
    import importlib.util

    info = {"used": "torch.nn.functional.scaled_dot_product_attention (diffusers' default processor)"}
    if device.type == "cuda":
        info["sdpa_kernels_enabled"] = {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "memory_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        }
    info["installed_not_used"] = [p for p in ("flash_attn", "sageattention") if importlib.util.find_spec(p)]
    return info


def write_results(path: Path, document: dict) -> None:
    text = json.dumps(document, indent=2, default=float)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def validate(document: dict) -> None:
    import jsonschema

    jsonschema.validate(document, SCHEMA)


def row_key(row: dict) -> str:
    """What makes two rows the same measurement: every setting (rank, dtypes, fp8, checkpointing, batch, optimizer,
    memory settings, compile, overrides), the clip size and the memory cap; the name alone says too little."""
    return json.dumps(
        {k: row.get(k) for k in ("name", "settings", "width", "height", "memory_cap_gib")}, sort_keys=True, default=str
    )


def matching_rows(current: dict, baseline: dict) -> list[str]:
    """Names of the rows here whose full settings a row of the baseline has."""
    keys = {row_key(row) for row in baseline["results"]}
    return [row["name"] for row in current["results"] if row_key(row) in keys]


def compare(current: dict, baseline: dict, time_threshold: float, memory_threshold: float) -> list[str]:
    """Rows are matched by their full settings (row_key). One line per configuration slower than the baseline by
    more than `time_threshold` (a fraction), using more peak device memory by more than `memory_threshold`, or
    failing where the baseline ran."""
    base_rows = {row_key(row): row for row in baseline["results"] if row["status"] == "ok"}
    regressions = []
    for row in current["results"]:
        base = base_rows.get(row_key(row))
        if base is None:
            continue
        if row["status"] != "ok":
            regressions.append(f"{row['name']}: {row['status']} now ({row.get('error', '')}), ok in the baseline")
            continue
        ratio = row["steady_s_median"] / base["steady_s_median"]
        if ratio > 1 + time_threshold:
            regressions.append(
                f"{row['name']}: {row['steady_s_median']:.4f} s/step vs {base['steady_s_median']:.4f} "
                f"(x{ratio:.3f}, threshold x{1 + time_threshold:.3f})"
            )
        # Device memory only: a process's host peak grows with every configuration run before it.
        now, before = row.get("peak_allocated_gib"), base.get("peak_allocated_gib")
        if now is not None and before and now > before * (1 + memory_threshold):
            regressions.append(
                f"{row['name']}: peak device memory {now:.3f} GiB vs {before:.3f} "
                f"(threshold x{1 + memory_threshold:.3f})"
            )
    return regressions
