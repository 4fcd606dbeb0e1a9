"""Beside Start: the estimated peak GPU memory of the current settings against the GPU found, in words, and the
host-memory plan's verdict for this machine's RAM (`plan_host_memory`: the numbers of `--plan` and diagnostics.json).

The estimate is the memory planner's (modules/planning.py: `plan_memory(config) -> MemoryPlan` with
`peak_gib` and `verdict(vram_gib)`), the same one docs/presets.md and the presets test use. It is imported
when needed, so the window opens without it.
"""

from __future__ import annotations

from functools import lru_cache

NOT_AVAILABLE = "memory estimate not available"


@lru_cache(maxsize=1)
def gpu_memory_gib() -> float | None:
    """Total memory of the first CUDA/ROCm device (or WAN_TRAINER_PRETEND_GPU_GIB's), or None (no GPU, or torch
    cannot see one)."""
    try:
        from modules.util.device import gpu_capacity_gib

        return gpu_capacity_gib()
    except Exception:  # noqa: BLE001 - no GPU information is an answer too
        return None


def memory_hint(config) -> str:
    try:
        from modules.planning import plan_memory
    except ImportError:
        return NOT_AVAILABLE
    try:
        plan = plan_memory(config)
    except Exception as error:  # noqa: BLE001 - an estimate that fails must not block the window
        return f"memory estimate failed: {error}"
    vram = gpu_memory_gib()
    found = f" (GPU: {vram:.0f} GiB)" if vram else " (no GPU found)"
    return f"peak ~{plan.peak_gib:.1f} GiB: {plan.verdict(vram)}{found}" + _ram_hint(config)


def _ram_hint(config) -> str:
    try:
        from modules.planning import plan_host_memory
    except ImportError:  # a planner without the host plan
        return ""
    try:
        summary = plan_host_memory(config)
    except Exception as error:  # noqa: BLE001 - as above
        return f"; RAM estimate failed: {error}"
    return f"; RAM: {summary.verdict}"
