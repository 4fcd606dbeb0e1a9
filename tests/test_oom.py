"""Out of memory in a training step: scripts/train.py's main() (in this process, to spare three interpreter starts) on
the tiny TI2V-5B model, with
WAN_TRAINER_TEST_OOM_AT_STEP making step 4's forward/backward pass raise torch.OutOfMemoryError (the type torch
raises) after the step has drawn its noise. The run must stop with exit status 4, say what was running, the peak
and the planner's advice, and leave a backup of step 3; resuming from it must end bit-identical to a run that
never failed (the RNG draws of the failed step are undone)."""

from __future__ import annotations

import sys

from modules.trainer.guards.oom import EXIT_OUT_OF_MEMORY, TEST_OOM_ENV
from modules.trainer.state.backups import backup_folders, check_backup
from tests.test_resume import EXACTNESS, REPO, assert_bit_identical, train_command

TOTAL_STEPS = 6
OOM_STEP = 4


def final_state(workspace):
    from safetensors.torch import load_file

    newest = backup_folders(workspace / "backups")[0]
    assert check_backup(newest)["global_step"] == TOTAL_STEPS
    state = {"weights": load_file(newest / "weights.safetensors"), "ema": load_file(newest / "ema.safetensors")}
    state["lora"] = load_file(workspace / "output" / "lora.safetensors")
    return state


def train_main(overrides, monkeypatch, capsys) -> tuple[int, str]:
    """scripts/train.py's main() with these overrides: (exit status, stdout + stderr)."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import train

    monkeypatch.setattr(sys, "argv", train_command(overrides)[1:])
    status = train.main()
    out = capsys.readouterr()
    return status, out.out + out.err


def test_oom_in_a_step_backs_up_the_last_step_and_resumes_bit_exact(
    demo_overrides, tmp_path, monkeypatch, capsys, caplog
):
    steps = [f"training.max_steps={TOTAL_STEPS}"]
    reference = tmp_path / "reference"
    assert train_main(demo_overrides(reference) + EXACTNESS + steps, monkeypatch, capsys)[0] == 0

    failing = tmp_path / "failing"
    base = demo_overrides(failing) + EXACTNESS
    monkeypatch.setenv(TEST_OOM_ENV, str(OOM_STEP))
    status, message = train_main(base + steps, monkeypatch, capsys)
    monkeypatch.delenv(TEST_OOM_ENV)
    assert status == EXIT_OUT_OF_MEMORY, message[-3000:]
    assert f"out of GPU memory during the forward and backward pass of step {OOM_STEP} on latents of shape" in message
    assert "measured peak: not measured (no CUDA/ROCm device)" in message
    assert f"a backup of step {OOM_STEP - 1} (the last completed step) is in " in message
    assert "memory planner: needs ~" in message  # no GPU here: the plan's peak
    (backup,) = backup_folders(failing / "backups")
    assert check_backup(backup)["global_step"] == OOM_STEP - 1
    assert not (failing / "output" / "lora.safetensors").exists()
    assert (failing / "diagnostics.json").is_file()  # every run writes the report first

    caplog.set_level("INFO", logger="wan_trainer")
    status, _ = train_main(base + steps + ["backup.continue_last_backup=true"], monkeypatch, capsys)
    assert status == 0
    assert f"resumed from {backup} at step {OOM_STEP - 1} " in caplog.text, caplog.text[-3000:]
    assert_bit_identical(final_state(reference), final_state(failing))


def test_oom_in_a_sample_is_logged_and_training_goes_on(demo_overrides, tmp_path, capsys):
    """The real sampler runs; its VAE decoder raises torch.OutOfMemoryError (as torch does when an allocation
    fails) through a forward hook, at every sample."""
    import torch

    from modules.config.loading import load_config
    from modules.trainer.generic_trainer import GenericTrainer

    overrides = [o for o in demo_overrides(tmp_path / "run") if not o.startswith("sampling.samples")]
    overrides += ["training.max_steps=2", "sampling.every_steps=1", "sampling.samples.0.steps=2"]
    trainer = GenericTrainer(load_config(REPO / "training_presets" / "demo_ti2v_5b_lora.json", overrides))
    trainer.load_and_cache()
    trainer.set_up_training()

    def run_out_of_memory(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    trainer.model.vae.decoder.register_forward_pre_hook(run_out_of_memory)
    result = trainer.train()
    assert result.steps == 2 and result.sample_files == [] and trainer.sample_hooks.failures >= 2
    assert (tmp_path / "run" / "output" / "lora.safetensors").is_file()
    out = capsys.readouterr()
    assert "out of memory while sampling; training goes on. Memory planner: needs ~" in out.out + out.err
