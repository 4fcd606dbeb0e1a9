"""scripts/train.py under torchrun with two processes: only the main process writes and shows progress, and a
process killed mid-run stops the run with a message, leaves the last backup intact, and resuming with two
processes continues exactly as an uninterrupted two-process run.

torchrun is the launcher `accelerate launch --multi_gpu` uses; here it runs two CPU processes (gloo) with a
c10d rendezvous on 127.0.0.1 and a free port, each process's output in its own log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from modules.trainer.state.backups import backup_folders, check_backup
from tests.distributed_runs import free_port
from tests.test_backup_crash import reaped
from tests.test_resume import PRESET, assert_bit_identical, newest_complete_step

REPO = Path(__file__).resolve().parent.parent
STEPS = 6
SETTINGS = [
    "training.lr_scheduler=constant",
    "training.warmup_steps=0",
    "lora.dropout=0.1",  # dropout draws from the global RNG of each process: restored by the resume
    "training.image_to_video_ratio=0.5",
    "ema.enabled=true",
    "ema.decay=0.9",
    "output.save_dtype=float32",
    "backup.every_steps=1",
    "backup.rolling_count=100",
]


def torchrun(overrides: list[str], logs: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--log-dir",
        str(logs),
        "--redirects=3",  # each process's stdout and stderr into its own file under `logs`
        str(REPO / "scripts" / "train.py"),
        "--config-path",
        str(PRESET),
    ]
    for override in overrides:
        command += ["--config-value", override]
    return command


def rank_log(logs: Path, rank: int) -> str:
    files = sorted(logs.rglob(f"attempt_0/{rank}/*.log"))
    assert files, f"no log of process {rank} under {logs}"
    return "".join(f.read_text(errors="replace") for f in files)


def final_state(workspace: Path) -> dict[str, dict[str, torch.Tensor]]:
    newest = backup_folders(workspace / "backups")[0]
    assert check_backup(newest)["global_step"] == STEPS
    state = {name: load_file(newest / f"{name}.safetensors") for name in ("weights", "optimizer", "ema", "rng")}
    state["lora"] = load_file(workspace / "output" / "lora.safetensors")
    return state


def run(overrides: list[str], logs: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(torchrun(overrides, logs), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:] + rank_log(logs, 0)[-3000:] + rank_log(logs, 1)[-3000:]
    return done


@pytest.fixture(scope="module")
def uninterrupted(demo_overrides, tmp_path_factory) -> Path:
    """A two-process run of STEPS steps with TensorBoard and a backup every step."""
    workspace = tmp_path_factory.mktemp("uninterrupted") / "run"
    overrides = demo_overrides(workspace) + SETTINGS + ["output.tensorboard=true", f"training.max_steps={STEPS}"]
    run(overrides, workspace.parent / "logs")
    return workspace


def test_only_the_main_process_writes_and_shows_progress(uninterrupted):
    logs = uninterrupted.parent / "logs"
    main, other = rank_log(logs, 0), rank_log(logs, 1)
    assert "training:" in main and "saved:" in main and f"Trained {STEPS} steps" in main
    assert "2 process(es) x batch 1" in main
    assert "training:" not in other and "saved:" not in other and "Trained" not in other, other[-2000:]
    assert "%|" not in other, "a progress bar in the other process's log"
    # One writer: one TensorBoard file, one backup per step (a second writer would add "-1" folders), one model.
    assert len(list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))) == 1
    backups = backup_folders(uninterrupted / "backups")
    assert sorted(check_backup(b)["global_step"] for b in backups) == list(range(1, STEPS + 1))
    assert [p.name for p in (uninterrupted / "output").iterdir()] == ["lora.safetensors"]


def test_killed_process_stops_the_run_and_the_resume_is_exact(uninterrupted, demo_overrides, tmp_path):
    workspace = tmp_path / "run"
    base = demo_overrides(workspace) + SETTINGS + ["output.tensorboard=false"]
    launcher = subprocess.Popen(
        torchrun(base + ["training.max_steps=1000"], tmp_path / "killed-logs"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with reaped(launcher):
        deadline = time.monotonic() + 240
        while (newest_complete_step(workspace) or 0) < 2:
            assert launcher.poll() is None and time.monotonic() < deadline, "no backup at step 2 appeared"
            time.sleep(0.05)
        workers = {int(p.environ().get("RANK", -1)): p for p in psutil.Process(launcher.pid).children(recursive=True)}
        os.kill(workers[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = launcher.communicate(timeout=90)
        ended_after = time.monotonic() - killed_at
    # Every process ended, within a bounded time, and the launcher says which process failed and how.
    assert launcher.returncode != 0 and ended_after < 90
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers.values())
    assert "SIGKILL" in output and "rank" in output and ": 1" in output, output[-3000:]
    print(f"all processes ended {ended_after:.1f} s after the kill")

    # The newest backup is complete; resuming with two processes ends as the uninterrupted run did, bit for bit.
    step = check_backup(backup_folders(workspace / "backups")[0])["global_step"]
    assert 2 <= step < STEPS
    done = run(base + [f"training.max_steps={STEPS}", "backup.continue_last_backup=true"], tmp_path / "resumed-logs")
    assert f"at step {step} " in rank_log(tmp_path / "resumed-logs", 0)
    assert done.returncode == 0
    assert_bit_identical(final_state(uninterrupted), final_state(workspace))


def test_resuming_with_another_number_of_processes_is_refused(uninterrupted, demo_overrides, tmp_path):
    """A backup of two processes, resumed by one: refused with the reason and the fix."""
    import shutil

    workspace = tmp_path / "run"
    shutil.copytree(uninterrupted / "backups", workspace / "backups")
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(PRESET)]
    for override in (
        demo_overrides(workspace)
        + SETTINGS
        + [
            f"training.max_steps={STEPS + 2}",
            "backup.continue_last_backup=true",
        ]
    ):
        command += ["--config-value", override]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "written by a run with 2 process(es), this run has 1" in done.stderr
    assert "--num-processes 2" in done.stderr
