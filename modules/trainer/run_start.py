"""What every training run does before loading the model: write the diagnostics report into the workspace (so a
bug report carries it) and warn when the memory plan does not fit the GPU found, naming the setting that would.
Neither may stop a run: a failure is logged and training goes on."""

from __future__ import annotations

import json
import logging

from modules.util.atomic import atomic_write

log = logging.getLogger("wan_trainer")
REPORT_FILE = "diagnostics.json"
BITSANDBYTES_SETTINGS = ("int8", "nf4")


def uses_bitsandbytes(config) -> bool:
    return config.training.optimizer == "adamw_8bit" or config.model.transformer_dtype in BITSANDBYTES_SETTINGS


def write_run_report(trainer) -> None:
    from modules.trainer.diagnostics import collect_report

    config = trainer.config
    try:
        report = collect_report(config, probe_bitsandbytes=uses_bitsandbytes(config))
        text = json.dumps(report, indent=2).encode()
        atomic_write(trainer.workspace / REPORT_FILE, lambda file: file.write(text))
    except Exception as error:  # noqa: BLE001 - a report must never stop training
        log.warning("could not write %s: %s", trainer.workspace / REPORT_FILE, error)
        return
    warn_if_plan_does_not_fit(trainer, report)


def warn_if_plan_does_not_fit(trainer, report: dict) -> None:
    if trainer.device.type != "cuda":
        return
    from modules.memory.planner import plan_memory
    from modules.trainer.oom import gpu_memory_gib

    vram = gpu_memory_gib(trainer.device)
    try:
        plan = plan_memory(trainer.config, vram)
    except Exception as error:  # noqa: BLE001
        log.warning("no memory plan: %s", error)
        return
    if not plan.fits(vram):
        log.warning("memory plan: this run %s (GPU: %.1f GiB). See scripts/train.py --plan", plan.verdict(vram), vram)
