"""What every training run does before loading the model, once its workspace is claimed: open the run's log file
(`<workspace>/run.log`, with the messages held since the start: library_messages.py beside this file), write the
diagnostics report into the workspace (so a bug report carries it) and warn when the memory plan does not fit the
GPU found, naming the setting that would; after the data is prepared, add the data report (per concept and per
file: corrections, unused and skipped files) to that report and to the event stream. None may stop a run: a failure
is logged and training goes on."""

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
    from modules.trainer.reporting.diagnostics import collect_report
    from modules.trainer.reporting.library_messages import run_log_file

    handler = run_log_file()  # set up by scripts/train.py; absent for callers that configure logging themselves
    if handler is not None:
        try:
            handler.open(trainer.workspace)
        except OSError as error:
            log.warning("could not open the run log in %s: %s", trainer.workspace, error)
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
    from modules.planning import plan_memory
    from modules.trainer.guards.oom import gpu_memory_gib

    vram = gpu_memory_gib(trainer.device)
    if vram is None:
        return
    try:
        plan = plan_memory(trainer.config, vram)
    except Exception as error:  # noqa: BLE001
        log.warning("no memory plan: %s", error)
        return
    if not plan.fits(vram):
        log.warning("memory plan: this run %s (GPU: %.1f GiB). See scripts/train.py --plan", plan.verdict(vram), vram)


def record_data_report(trainer) -> None:
    """The data report's plain record into diagnostics.json ("data") and the event stream (kind "data")."""
    report = getattr(trainer.data, "report", None)  # a data loader without the media pipeline has none
    if report is None:
        return
    from modules.trainer.reporting import run_events

    record = report.record()
    run_events.emit("data", **record)
    path = trainer.workspace / REPORT_FILE
    try:
        written = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        text = json.dumps({**written, "data": record}, indent=2).encode()
        atomic_write(path, lambda file: file.write(text))
    except Exception as error:  # noqa: BLE001 - a report must never stop training
        log.warning("could not add the data report to %s: %s", path, error)
