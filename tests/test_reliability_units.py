"""Issue 12, the parts below the CLI: atomic writes on a full disk, the advice for a non-finite loss, the
workspace lock's own rules and lora.continue_from loading the file's weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from modules.base.model_setup import TrainProgress
from modules.config.loading import load_config
from modules.trainer.guards.nonfinite_loss import nonfinite_loss_error
from modules.trainer.guards.workspace_lock import WorkspaceLock, WorkspaceLockError
from modules.trainer.state.backups import backup_folders, read_backup
from modules.trainer.state.resume import BackupController
from tests.reliability_cli import DEMO_PRESET, REPO

_FULL_DISK_WRITE = """
import resource, signal, sys, torch
sys.path.insert(0, sys.argv[1])
from modules.util.atomic import save_safetensors_atomic
from modules.util.disk_space import DiskFullError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
try:
    save_safetensors_atomic({"w": torch.ones(100000)}, sys.argv[2])
except DiskFullError as error:
    print(error)
"""


def test_a_write_that_runs_out_of_space_keeps_the_previous_file(tmp_path):
    target = tmp_path / "lora.safetensors"
    target.write_bytes(b"the previous good file")
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_WRITE, str(REPO), str(target)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{tmp_path}: could not write lora.safetensors" in done.stdout
    assert "about 390.6 KiB needed" in done.stdout and "Fix" in done.stdout  # 100000 float32
    assert target.read_bytes() == b"the previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora.safetensors"]  # no temp file left


def minimal_trainer(tmp_path: Path):
    """The trainer state a backup is made from (real optimizer, scheduler, generator), without a model."""
    from modules.trainer.optim.optimizers import create_lr_scheduler, create_optimizer

    config = load_config(DEMO_PRESET, [f"output.workspace_dir={tmp_path / 'ws'}"])
    parameter = torch.nn.Parameter(torch.randn(4, 3))
    optimizer = create_optimizer([{"params": [parameter]}], config.training)
    trainer = SimpleNamespace(
        config=config,
        parameters=[parameter],
        optimizer=optimizer,
        lr_scheduler=create_lr_scheduler(optimizer, config.training),
        generator=torch.Generator().manual_seed(1),
        progress=TrainProgress(global_step=7),
        ema=None,
    )
    trainer.backups = BackupController(trainer)
    return trainer


def batch_of_two(latents: torch.Tensor) -> dict:
    return {
        "latents": latents,
        "text_embeds": torch.zeros(2, 4, 8),
        "sources": ["/data/a.mp4", "/data/b.mp4"],
        "cache_entries": [["/cache/latents/aa.safetensors", "/cache/text/t1.safetensors"]] * 2,
    }


def test_non_finite_loss_from_bad_data_blames_the_data_not_the_learning_rate(tmp_path):
    trainer = minimal_trainer(tmp_path)
    latents = torch.zeros(2, 3, 2, 2, 2)
    latents[1, 0, 0, 0, 0] = float("nan")
    error = nonfinite_loss_error(trainer, batch_of_two(latents), float("nan"), RuntimeError)
    message = str(error)
    assert "the data is the cause" in message and "/data/b.mp4: non-finite latents" in message
    assert "/cache/latents/aa.safetensors" in message and "learning_rate" not in message
    (backup,) = backup_folders(tmp_path / "ws" / "backups")
    assert str(backup) in message and "step 7, the last good one" in message
    assert torch.equal(read_backup(backup).tensors["weights"]["param.0"], trainer.parameters[0].detach())


def test_non_finite_loss_on_finite_data_points_at_the_numbers(tmp_path):
    trainer = minimal_trainer(tmp_path)
    message = str(nonfinite_loss_error(trainer, batch_of_two(torch.zeros(2, 3, 2, 2, 2)), float("inf"), RuntimeError))
    assert "training.learning_rate" in message and "/data/a.mp4" in message and "data is the cause" not in message
    with torch.no_grad():
        trainer.parameters[0][0, 0] = float("nan")
    trainer.progress.global_step = 8
    message = str(nonfinite_loss_error(trainer, batch_of_two(torch.zeros(2, 3, 2, 2, 2)), float("nan"), RuntimeError))
    assert "already non-finite" in message and "No backup of step 8 was written" in message
    assert len(backup_folders(tmp_path / "ws" / "backups")) == 1  # the NaN weights were not backed up


def test_workspace_lock_refuses_a_live_owner_and_releases_only_its_own(tmp_path):
    with WorkspaceLock(tmp_path):
        with pytest.raises(WorkspaceLockError, match=f"PID {os.getppid()}"):
            # A lock held by a live process (our parent stands in for another run).
            (tmp_path / "run.lock").write_text(
                json.dumps({"pid": os.getppid(), "host": os.uname().nodename, "started": "x"})
            )
            WorkspaceLock(tmp_path).acquire()
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getppid()
    assert (tmp_path / "run.lock").exists()  # not ours any more: left for its owner


def test_continue_from_loads_the_files_weights(tiny_model_dir, tmp_path):
    from modules.module.lora import lora_state_dict
    from modules.wan.formats.lora_file import save_lora_file
    from modules.wan.loading.loader import load_wan_model
    from modules.wan.training.lora_setup import WanLoRASetup

    folder = tiny_model_dir("TI2V-5B")
    config = load_config(DEMO_PRESET, [f"model.base_path={folder}", "lora.rank=4", "lora.alpha=4.0"])
    first = load_wan_model(folder, transformer_dtype=torch.float32)
    WanLoRASetup().setup_model(first, config)
    trained = {k: torch.randn_like(v) for k, v in lora_state_dict(first.transformer).items()}
    path = save_lora_file(trained, tmp_path / "start.safetensors", rank=4, alpha=4.0, variant="TI2V-5B")
    config.lora.continue_from = str(path)
    second = load_wan_model(folder, transformer_dtype=torch.float32)
    WanLoRASetup().setup_model(second, config)
    loaded = lora_state_dict(second.transformer)
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert load_file(str(path)).keys()  # the file itself is untouched and readable
