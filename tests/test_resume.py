"""Resume is exact: an uninterrupted run and a run SIGKILLed after a backup, then resumed, end bit-identical.

Both runs are real `scripts/train.py` subprocesses on the tiny TI2V-5B model and the demo clips. The run
that gets killed is configured to train far longer than the reference (a constant LR after warmup, so the
step count does not change the math) and writes a backup every step; the test kills it with SIGKILL as
soon as a backup at step >= 3 exists, so the kill lands mid-training whatever the machine's speed. LoRA
dropout, the TI2V image-to-video draw and an EMA are on, so the global torch RNG, the trainer's generator
and the EMA state must all be restored for the weights to match. The resumed run crosses an epoch boundary
(9 batches per epoch), so the position in the data order is exercised too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modules.registry import PLUGINS
from modules.trainer.state.backups import BackupError, backup_folders, check_backup
from tests.test_backup_crash import reaped, sigkill

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "training_presets" / "demo_ti2v_5b_lora.json"
TOTAL_STEPS = 12
EXACTNESS = [
    "training.lr_scheduler=constant",
    "training.warmup_steps=2",
    "lora.dropout=0.1",
    "training.image_to_video_ratio=0.5",
    "ema.enabled=true",
    "ema.decay=0.9",
    "backup.before_save=true",
    "output.save_dtype=float32",
]


def train_command(overrides: list[str]) -> list[str]:
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(PRESET)]
    for override in overrides:
        command += ["--config-value", override]
    return command


def run_training(overrides: list[str]) -> str:
    done = subprocess.run(train_command(overrides), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def newest_complete_step(workspace: Path) -> int | None:
    for folder in backup_folders(workspace / "backups"):
        try:
            return check_backup(folder)["global_step"]
        except BackupError:
            continue
    return None


def final_state(workspace: Path) -> dict[str, dict[str, torch.Tensor]]:
    newest = backup_folders(workspace / "backups")[0]
    assert check_backup(newest)["global_step"] == TOTAL_STEPS
    state = {"weights": load_file(newest / "weights.safetensors"), "ema": load_file(newest / "ema.safetensors")}
    # The saved model files (written from the EMA): a LoRA file, or a full model's single file and folder.
    for path in sorted((workspace / "output").rglob("*.safetensors")):
        state[str(path.relative_to(workspace))] = load_file(path)
    assert len(state) > 2
    return state


def assert_bit_identical(left: dict, right: dict) -> None:
    for part in left:
        assert left[part].keys() == right[part].keys(), part
        different = [k for k in left[part] if not torch.equal(left[part][k], right[part][k])]
        assert not different, f"{part}: {len(different)} tensors differ, e.g. {different[:3]}"


def kill_after_backup(overrides: list[str], workspace: Path, min_step: int = 3) -> int:
    """Start a long run, SIGKILL it once a backup at step >= min_step is complete; return the newest step."""
    process = subprocess.Popen(train_command(overrides), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with reaped(process):
        deadline = time.monotonic() + 300
        while (newest_complete_step(workspace) or 0) < min_step:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no backup appeared within 300 s"
            time.sleep(0.02)
        sigkill(process)
    step = newest_complete_step(workspace)
    assert min_step <= step < TOTAL_STEPS, f"the killed run got to step {step}; the test needs it below {TOTAL_STEPS}"
    assert not list((workspace / "output").rglob("*.safetensors")), "the killed run finished"
    return step


@pytest.mark.parametrize("training_method", ["lora", "full"])
def test_sigkilled_and_resumed_run_equals_an_uninterrupted_run(training_method, demo_overrides, tmp_path):
    if ("wan_2_2", training_method) not in PLUGINS:
        pytest.skip(f"wan_2_2/{training_method} is not in modules/registry.py yet")
    assert_sigkilled_resume_is_exact([f"training_method={training_method}"], demo_overrides, tmp_path)


def assert_sigkilled_resume_is_exact(settings: list[str], demo_overrides, tmp_path: Path) -> None:
    """A run SIGKILLed after a backup and resumed from it ends bit-identical to an uninterrupted run."""
    reference = tmp_path / "reference"
    run_training(demo_overrides(reference) + EXACTNESS + settings + [f"training.max_steps={TOTAL_STEPS}"])
    interrupted = tmp_path / "interrupted"
    base = demo_overrides(interrupted) + EXACTNESS + settings
    killed_at = kill_after_backup(
        base + ["training.max_steps=1000", "backup.every_steps=1", "backup.rolling_count=2"], interrupted
    )
    log = run_training(base + [f"training.max_steps={TOTAL_STEPS}", "backup.continue_last_backup=true"])
    assert f"at step {killed_at} " in log, log[-3000:]
    assert_bit_identical(final_state(reference), final_state(interrupted))
