"""Issue 12: every bad input and fault ends with a clear message (exit code 2, no traceback) and nothing earlier
lost. Each test runs scripts/train.py, sample.py or convert_model.py as a user does, on the tiny TI2V-5B demo,
against a workspace prepared once (cache entries, a saved LoRA and two backups) whose files must not change.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from modules.config.loading import apply_override, config_from_dict, load_config
from modules.config.validation import ConfigError
from modules.data.sources.concepts import DataError
from modules.registry import plugin_for
from modules.trainer.guards.preflight import check_before_loading, check_writable_folder
from modules.trainer.guards.workspace_lock import WorkspaceLock
from modules.trainer.reporting.library_messages import LOG_FILE
from modules.trainer.state.backups import backup_folders, check_backup
from modules.wan.formats.lora_file import save_lora_file
from tests.reliability_cli import (
    DEMO_PRESET,
    REPO,
    RunningTrainer,
    assert_clean_stop,
    assert_known_error,
    run_script,
    snapshot,
    start_freezer,
    terminal_lines,
    train,
    train_arguments,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def base_values(model: Path, data: Path, workspace: Path, cache: Path) -> list[str]:
    return [
        f"model.base_path={model}",
        f"data.concepts.0.path={data}",
        f"output.workspace_dir={workspace}",
        f"data.cache_dir={cache}",
        "sampling.samples=[]",
        "output.tensorboard=false",
        "output.save_every_steps=0",
        "training.max_steps=4",
        "backup.every_steps=2",
        "backup.rolling_count=2",
    ]


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, demo_data_dir, tmp_path_factory):
    """A finished 4-step demo run: its cache, its LoRA and backups at steps 2 and 4."""
    root = tmp_path_factory.mktemp("prepared")
    model, workspace, cache = tiny_model_dir("TI2V-5B"), root / "workspace", root / "cache"
    done = train(*base_values(model, demo_data_dir, workspace, cache))
    assert done.returncode == 0, done.stderr[-4000:]
    assert len(backup_folders(workspace / "backups")) == 2
    return {"model": model, "data": demo_data_dir, "workspace": workspace, "cache": cache}


def values(prepared, workspace: Path | None = None, cache: Path | None = None) -> list[str]:
    return base_values(
        prepared["model"], prepared["data"], workspace or prepared["workspace"], cache or prepared["cache"]
    )


def copy_workspace(prepared, tmp_path: Path) -> tuple[Path, Path]:
    workspace, cache = tmp_path / "workspace", tmp_path / "cache"
    shutil.copytree(prepared["workspace"], workspace)
    shutil.copytree(prepared["cache"], cache)
    return workspace, cache


# ---- config ------------------------------------------------------------------------------------------
def test_non_finite_numbers_and_overrides_into_a_value_are_config_errors(prepared):
    before = snapshot(prepared["workspace"], prepared["cache"])
    done = train(*values(prepared), "training.learning_rate=NaN")
    message = assert_known_error(done, "training.learning_rate", "not a finite number")
    assert "lower" not in message
    # Every float setting is checked in one place (validation reads the field type): a few more, in-process.
    # The fix gives the setting's own range (flow_shift's minimum is 0.01, so not "such as 1e-4").
    for setting, value, fix in (
        ("training.flow_shift", "Infinity", "a number of at least 0.01"),
        ("lora.alpha", "-Infinity", "a number of at least 0"),
        ("ema.decay", "NaN", "a number from 0 to 1"),
    ):
        data = json.loads(DEMO_PRESET.read_text())
        apply_override(data, f"{setting}={value}")
        with pytest.raises(ConfigError, match=f"{re.escape(setting)}: .* is not a finite number. Fix: give {fix}$"):
            config_from_dict(data)
    done = train(*values(prepared), "training.max_steps.value=3")
    assert_known_error(done, "training.max_steps.value=3", "training.max_steps=VALUE")
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


# ---- outputs that cannot be written -----------------------------------------------------------------
def test_unwritable_output_or_cache_refused_before_the_model_loads(prepared, tmp_path):
    before = snapshot(prepared["workspace"], prepared["cache"])
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = train(*values(prepared), f"output.output_path={blocker / 'sub' / 'lora.safetensors'}")
    assert_known_error(done, "output.output_path", str(blocker), "is a file, not a folder")
    assert "caching" not in done.stderr  # refused before the model loads
    # The same check covers every folder the run writes (in-process: the cache and the workspace itself).
    config = load_config(DEMO_PRESET, [*values(prepared), f"data.cache_dir={blocker / 'cache'}"])
    with pytest.raises(ConfigError, match=f"data.cache_dir: .*{re.escape(str(blocker))} is a file"):
        check_before_loading(config, plugin_for(config.model_type, config.training_method).data_loader())
    config = load_config(DEMO_PRESET, [*values(prepared), f"output.workspace_dir={blocker / 'ws'}"])
    with pytest.raises(ConfigError, match="output.workspace_dir: .* is a file"):
        check_before_loading(config, plugin_for(config.model_type, config.training_method).data_loader())
    if os.geteuid() != 0:  # root writes anyway; elsewhere a read-only folder is refused by the same check
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o555)
        with pytest.raises(ConfigError, match="output.output_path: .* is not writable"):
            check_writable_folder(read_only, "output.output_path")
    assert blocker.read_text() == "not a folder"
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


def _unshare_tmpfs_works(folder: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {folder}"], capture_output=True
    )
    return probe.returncode == 0


def test_failed_final_save_keeps_the_weights_in_a_named_fallback(prepared, tmp_path):
    """The output folder is a 32 KiB file system (writable, so the pre-check passes) and the 52 KB LoRA does not
    fit: the run ends with exit 2, names the failed file, the space needed and where the weights are; the kept
    file equals the prepared run's LoRA (same settings and seed)."""
    small = tmp_path / "small_disk"
    small.mkdir()
    if shutil.which("unshare") is None or not _unshare_tmpfs_works(small):
        pytest.skip("needs unshare -rm and tmpfs (a mount namespace) to make a small file system")
    workspace = tmp_path / "workspace"
    out = small / "lora.safetensors"
    cache_before = snapshot(prepared["cache"])
    args = [*values(prepared, workspace), f"output.output_path={out}", "backup.every_steps=0"]
    script = "mount -t tmpfs -o size=32k tmpfs \"$0\" && exec \"$@\""
    done = run_script(
        "train.py",
        "--config-path",
        str(Path(__file__).resolve().parent.parent / "training_presets" / "demo_ti2v_5b_lora.json"),
        *[item for value in args for item in ("--config-value", value)],
        wrap=["unshare", "-rm", "sh", "-c", script, str(small)],
    )
    message = assert_known_error(done, str(out), "fallback-save", "the disk is full", "needed")
    kept = workspace / "fallback-save" / "lora.safetensors"
    assert str(kept) in message
    reference = load_file(str(prepared["workspace"] / "output" / "lora.safetensors"))
    assert load_file(str(kept)).keys() == reference.keys()
    for key, tensor in reference.items():
        assert torch.equal(load_file(str(kept))[key], tensor), key
    assert snapshot(prepared["cache"]) == cache_before


# ---- data ----------------------------------------------------------------------------------------------
def test_missing_concept_folder_or_caption_refused_before_the_model_loads(prepared, tmp_path):
    before = snapshot(prepared["workspace"], prepared["cache"])
    missing = tmp_path / "no_such_folder"
    config = load_config(DEMO_PRESET, [*values(prepared), f"data.concepts.0.path={missing}"])
    with pytest.raises(DataError, match=f"data.concepts\\[0\\]: {re.escape(str(missing))}: .*does not exist.*Fix"):
        check_before_loading(config, plugin_for(config.model_type, config.training_method).data_loader())
    uncaptioned = tmp_path / "clips"
    uncaptioned.mkdir()
    clip = sorted(prepared["data"].glob("*.mp4"))[0]
    shutil.copy(clip, uncaptioned / clip.name)
    done = train(
        *values(prepared),
        f"data.concepts.0.path={uncaptioned}",
        "data.concepts.0.on_missing_caption=error",
    )
    assert_known_error(done, "data.concepts[0]", clip.name, "on_missing_caption")
    assert "caching" not in done.stderr
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


def test_cache_entry_with_nan_tensors_is_named_and_rebuilt(prepared, tmp_path):
    workspace, cache = copy_workspace(prepared, tmp_path)
    entries = sorted((cache / "latents").rglob("*.safetensors"))
    bad = entries[0]
    tensors = load_file(str(bad))
    with safe_open(str(bad), "pt") as handle:  # keep the metadata: a valid header, only the numbers are wrong
        metadata = handle.metadata()
    save_file({k: torch.full_like(v, float("nan")) for k, v in tensors.items()}, str(bad), metadata)
    others = snapshot(*[e for e in entries[1:]])
    done = train(*values(prepared, workspace, cache), "training.max_steps=1", "backup.every_steps=0")
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"cache entry {bad}" in done.stderr and "NaN/Inf" in done.stderr and metadata["source"] in done.stderr
    assert "1 latents and 0 captions encoded now" in done.stderr
    rebuilt = load_file(str(bad))
    assert all(torch.isfinite(v).all() and torch.equal(v, tensors[k]) for k, v in rebuilt.items())
    assert snapshot(*entries[1:]) == others


def test_non_finite_loss_names_the_batch_and_keeps_the_last_good_step(prepared, tmp_path):
    """A learning rate of 1e30 makes step 1 produce huge weights and step 2 an infinite loss: the message names
    the batch's source files and cache entries, blames the numbers (the data is finite), and the last good
    step's weights are in a backup; the backups written before are unchanged."""
    workspace, cache = copy_workspace(prepared, tmp_path)
    shutil.rmtree(workspace / "backups")
    cache_before = snapshot(cache)
    done = train(
        *values(prepared, workspace, cache),
        "training.learning_rate=1e30",
        "training.warmup_steps=0",
        "backup.every_steps=0",
    )
    message = assert_known_error(done, "the loss became", "training.learning_rate", "cache:", str(cache))
    assert any(str(p) in message for p in prepared["data"].iterdir() if p.suffix in (".mp4", ".png"))
    assert "data is the cause" not in message
    folders = backup_folders(workspace / "backups")
    assert folders, message
    assert str(folders[0]) in message or "newest backup is" in message
    assert snapshot(cache) == cache_before


# ---- workspace lock -----------------------------------------------------------------------------------
def test_workspace_in_use_is_refused_and_a_stale_lock_taken_over(prepared, tmp_path, caplog):
    workspace, cache = copy_workspace(prepared, tmp_path)
    before = snapshot(workspace, cache)
    lock = workspace / "run.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "started": "2026-01-02 03:04"}))
        done = train(*values(prepared, workspace, cache))
        assert_known_error(done, f"PID {sleeper.pid}", "2026-01-02 03:04", str(lock))
        assert snapshot(workspace, cache) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    # The sleeper has ended: its lock is stale and is taken over, with a message (in-process: no model needed).
    with caplog.at_level("WARNING"), WorkspaceLock(workspace):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of a run that is no longer running (PID {sleeper.pid}" in caplog.text
    assert not lock.exists()  # released at the end


# ---- disk full -----------------------------------------------------------------------------------------
def test_disk_full_while_writing_a_backup_keeps_the_previous_ones(prepared, tmp_path):
    """Writes past 60 KB fail (EFBIG, as on a full disk): the LoRA-sized files fit, a backup's optimizer state
    does not. The run stops naming the backups folder and the space needed; older backups are intact."""
    workspace, cache = copy_workspace(prepared, tmp_path)
    before = snapshot(workspace / "backups")
    done = train(
        *values(prepared, workspace, cache), "backup.every_steps=1", "training.max_steps=2", file_size_limit=60_000
    )
    assert_known_error(done, str(workspace / "backups"), "needed", "file-size limit")
    assert snapshot(workspace / "backups") == before
    assert not list((workspace / "backups").glob(".tmp-*"))
    for folder in backup_folders(workspace / "backups"):
        check_backup(folder)


def test_disk_full_while_caching_leaves_no_partial_entry(prepared, tmp_path):
    workspace, cache = tmp_path / "workspace", tmp_path / "cache"
    done = train(*values(prepared, workspace, cache), "training.max_steps=1", file_size_limit=4_000)
    assert_known_error(done, str(cache), "needed")
    assert not [p for p in cache.rglob("*") if p.is_file()]  # neither entries nor temp files


# ---- LoRAs for another model, broken LoRA files ---------------------------------------------------------
def other_model_lora(prepared, path: Path, variant: str = "T2V-A14B") -> Path:
    """The prepared TI2V-5B LoRA's tensors saved with another variant's model spec (the tiny models share
    their layer shapes, so only the spec tells them apart)."""
    from modules.wan.formats.lora_file import load_lora_file

    state_dict, metadata = load_lora_file(prepared["workspace"] / "output" / "lora.safetensors")
    return save_lora_file(state_dict, path, rank=8, alpha=8.0, variant=variant)


SAMPLE_ARGS = ["--width", "32", "--height", "32", "--frames", "5", "--steps", "2", "--dtype", "float32"]
SAMPLE_ARGS += ["--device", "cpu", "--text-max-length", "16", "--format", "png", "--prompt", "a red circle"]


def test_sampling_with_a_lora_for_another_model_is_refused(prepared, tmp_path):
    lora = other_model_lora(prepared, tmp_path / "t2v_lora.safetensors")
    common = ["--model", str(prepared["model"]), *SAMPLE_ARGS]
    done = run_script("sample.py", *common, "--lora", str(lora), "--out", str(tmp_path / "out"))
    assert_known_error(done, str(lora), "T2V-A14B", "TI2V-5B", "--allow-other-model-lora")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    # The override, and the check's own reading of another variant's LoRA (header only, nothing loaded).
    from modules.wan.formats.lora_compatibility import check_lora_fits

    info = check_lora_fits(lora, "TI2V-5B", allow_other_model=True)
    assert info.model == "T2V-A14B"
    assert check_lora_fits(prepared["workspace"] / "output" / "lora.safetensors", "TI2V-5B").model == "TI2V-5B"


def test_garbage_or_truncated_lora_files_are_named(prepared, tmp_path):
    good = (prepared["workspace"] / "output" / "lora.safetensors").read_bytes()
    garbage, truncated = tmp_path / "garbage.safetensors", tmp_path / "truncated.safetensors"
    garbage.write_bytes(os.urandom(4096))
    truncated.write_bytes(good[: len(good) // 2])
    common = ["--model", str(prepared["model"]), *SAMPLE_ARGS, "--out", str(tmp_path / "out")]
    done = run_script("sample.py", *common, "--lora", str(garbage))
    assert_known_error(done, str(garbage), "not a usable safetensors file")
    done = run_script(
        "convert_model.py", "lora", str(truncated), str(tmp_path / "x.safetensors"), "--format", "diffusers"
    )
    assert_known_error(done, str(truncated), "not a usable safetensors file", "truncated")
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_model_missing_file_and_lora_for_another_model(prepared, tmp_path):
    missing = tmp_path / "nope.safetensors"
    done = run_script(
        "convert_model.py", "lora", str(missing), str(tmp_path / "x.safetensors"), "--format", "diffusers"
    )
    assert_known_error(done, str(missing), "no such file")
    lora = other_model_lora(prepared, tmp_path / "t2v_lora.safetensors")
    out = tmp_path / "converted.safetensors"
    args = ["lora", str(lora), str(out), "--format", "diffusers", "--model", str(prepared["model"])]
    done = run_script("convert_model.py", *args)
    assert_known_error(done, str(lora), "T2V-A14B", "TI2V-5B", "--allow-other-model")
    assert not out.exists()
    done = run_script("convert_model.py", *args, "--allow-other-model")
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.is_file()


def test_trainer_continue_from_a_lora_for_another_model_is_refused(prepared, tmp_path):
    workspace, cache = copy_workspace(prepared, tmp_path)
    before = snapshot(workspace, cache)
    lora = other_model_lora(prepared, tmp_path / "t2v_lora.safetensors")
    done = train(*values(prepared, workspace, cache), f"lora.continue_from={lora}")
    assert_known_error(done, "lora.continue_from", str(lora), "T2V-A14B", "TI2V-5B")
    assert snapshot(workspace, cache) == before


# ---- sample.py inputs ----------------------------------------------------------------------------------
def test_prompts_file_that_is_not_utf8_names_file_and_option(prepared, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"a red circle\nna\xefve caf\xe9\n")
    done = run_script(
        "sample.py", "--model", str(prepared["model"]), "--prompts-file", str(prompts), "--out", str(tmp_path / "o")
    )
    assert_known_error(done, "--prompts-file", str(prompts), "UTF-8", "line 2")
    assert "Loading" not in done.stderr


# ---- issue 23: nothing lost, round two --------------------------------------------------------------------------
# A sample definition small enough for a CPU test (the demo preset's is 64x64x17 with 8 steps).
def sample_json(steps: int = 2, **extra) -> str:
    sample = {"prompt": "a red circle", "width": 32, "height": 32, "frames": 5, "steps": steps, "seed": 1, **extra}
    return json.dumps(sample)


def wait_for_step(events: Path, step: int):
    def reached() -> bool:
        return events.is_file() and f'"step": {step},' in events.read_text()

    return reached


@pytest.mark.slow
def test_a_rerun_never_deletes_a_stopped_runs_backups_and_they_resume_exactly(prepared, tmp_path):
    """Ctrl-C at step >= 5 (backups every 2 steps, rolling count 2); the same command again is refused before the
    model loads, naming backup.continue_last_backup and the resume command (with this interpreter), and changes
    nothing; the printed resume command continues bit-identically to an uninterrupted run, and the stopped run's
    backups are all still there afterwards (the resumed run deletes only its own)."""
    from tests.test_resume import EXACTNESS, TOTAL_STEPS, assert_bit_identical, final_state

    common = [*EXACTNESS, "backup.every_steps=2", "backup.rolling_count=2"]
    reference = tmp_path / "reference"
    done = train(*values(prepared, reference), *common, f"training.max_steps={TOTAL_STEPS}")
    assert done.returncode == 0, done.stderr[-3000:]

    workspace, events = tmp_path / "stopped", tmp_path / "events.jsonl"
    command = train_arguments(
        *values(prepared, workspace), *common, "training.max_steps=1000", extra=("--events-file", str(events))
    )
    trainer = RunningTrainer(command, tmp_path / "stopped-run")
    try:
        trainer.wait_until(wait_for_step(events, 5))
        trainer.interrupt()
    finally:
        trainer.stop()
    assert_clean_stop(trainer, "Stopped at step")
    stopped_backups = snapshot(workspace / "backups")
    assert len(backup_folders(workspace / "backups")) == 2  # the run's own rolling count

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    names = ("backup.continue_last_backup", str(workspace / "backups"), "output.workspace_dir")
    message = assert_known_error(again, *names)
    assert "caching" not in again.stderr  # refused before the model loads
    resume_line = again.stderr.strip().splitlines()[-1].strip()
    assert resume_line.startswith(sys.executable + " ") and resume_line.endswith("backup.continue_last_backup=true")
    assert snapshot(workspace / "backups") == stopped_backups, message

    resumed = subprocess.run(
        [*shlex.split(resume_line), "--config-value", f"training.max_steps={TOTAL_STEPS}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_bit_identical(final_state(reference), final_state(workspace))
    after = snapshot(workspace / "backups")
    assert all(after.get(path) == digest for path, digest in stopped_backups.items()), "a stopped run's backup changed"


ALLOWED_TERMINAL_LINES = (
    r"INFO wan_trainer[\w.]*: ",  # the trainer's own notes (data report, backups, the earlier run's backups kept)
    r"WARNING wan_trainer\.samples: sample 1 \(end-step000006\) failed at step 6: start_image: .* Fix: ",
    r"batch: \d+ process",
    r"sample 1 failed at step 6: SampleError: start_image: .* Fix: .*; training goes on",
    r"saved: ",
    r"sample written: ",
    r"Trained 6 steps\. Workspace: ",
    r"  (model|sample|TensorBoard): ",
)


@pytest.mark.slow
def test_a_fresh_run_keeps_a_finished_runs_backups_and_prints_only_its_own_lines(prepared, tmp_path):
    """The prepared run finished (backups at steps 2 and 4 of 4): a new run from step 0 in a copy of its workspace
    is allowed, writes its own rolling backups and leaves the earlier ones byte-identical. What it prints is the
    trainer's own lines only: library notices known to be harmless go to <workspace>/run.log; a sample whose
    start_image is missing is one warning line, without a traceback."""
    from modules.trainer.reporting.library_messages import KNOWN_HARMLESS

    workspace, cache = copy_workspace(prepared, tmp_path)
    earlier, earlier_folders = snapshot(workspace / "backups"), backup_folders(workspace / "backups")
    missing = tmp_path / "deleted.png"
    samples = f"sampling.samples=[{sample_json()}, {sample_json(start_image=str(missing))}]"
    done = train(*values(prepared, workspace, cache), "training.max_steps=6", samples)
    assert done.returncode == 0, done.stderr[-3000:]
    after = snapshot(workspace / "backups")
    assert all(after.get(path) == digest for path, digest in earlier.items())
    own = [folder for folder in backup_folders(workspace / "backups") if folder not in earlier_folders]
    assert [check_backup(folder)["global_step"] for folder in own] == [6, 4]  # its rolling count of 2

    lines = terminal_lines(done.stdout + done.stderr)
    unexpected = [line for line in lines if not any(re.match(p, line) for p in ALLOWED_TERMINAL_LINES)]
    assert not unexpected, "\n".join(unexpected)
    assert "Traceback" not in done.stdout + done.stderr
    log_text = (workspace / LOG_FILE).read_text()
    assert f"start_image: '{missing}' is not a file" in log_text  # the warning, in the log too
    assert "Trained" not in log_text  # the log holds the run's logged messages, not its printed summary
    harmless = [pattern for pattern, _ in KNOWN_HARMLESS if re.search(pattern, log_text)]
    if importlib.util.find_spec("bitsandbytes") and not importlib.util.find_spec("kernels"):
        assert harmless, "bitsandbytes' missing-kernels notice was expected in run.log"
    for pattern in harmless:
        assert not re.search(pattern, done.stdout + done.stderr), pattern


# Ctrl-C in every phase, through scripts/train.py: the stop is taken at the phase's next safe point, so what runs
# between the signal and the exit is at most one unit of that phase's work (a model part, a cache entry, a
# denoising step; a save is finished, never cut).
def interrupted_run(command: list[str], folder: Path, ready) -> tuple[RunningTrainer, float]:
    trainer = RunningTrainer(command, folder)
    try:
        trainer.wait_until(ready)
        elapsed = trainer.interrupt()
    finally:
        trainer.stop()
    return trainer, elapsed


@pytest.mark.slow
def test_ctrl_c_while_loading_stops_before_anything_is_cached(prepared, tmp_path):
    workspace, cache = tmp_path / "workspace", tmp_path / "cache"
    # diagnostics.json is written right before the model loads (modules/trainer/reporting/run_start.py).
    trainer, _ = interrupted_run(
        train_arguments(*values(prepared, workspace, cache)),
        tmp_path / "run",
        lambda: (workspace / "diagnostics.json").is_file(),
    )
    output = assert_clean_stop(trainer, "Stopped while loading the model on SIGINT")
    assert f"Start again with: {sys.executable} " in output
    assert not [p for p in cache.rglob("*") if p.is_file()], "caching started after the stop"
    assert not (workspace / "backups").exists() or not list((workspace / "backups").iterdir())


@pytest.mark.slow
def test_ctrl_c_while_caching_keeps_finished_entries_and_stops_at_the_next(prepared, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for copy in range(6):  # 24 clips, about 40 windows: several seconds of caching
        for clip in sorted(prepared["data"].glob("*.mp4")):
            shutil.copy(clip, data / f"{clip.stem}_{copy}.mp4")
            (data / f"{clip.stem}_{copy}.txt").write_text(clip.with_suffix(".txt").read_text())
    workspace, cache = tmp_path / "workspace", tmp_path / "cache"

    def entries() -> list[Path]:
        return sorted((cache / "latents").rglob("*.safetensors")) if cache.is_dir() else []

    counted = {}

    def two_cached() -> bool:
        counted["at_signal"] = len(entries())
        return counted["at_signal"] >= 2

    args = [*values(prepared, workspace, cache), f"data.concepts.0.path={data}"]
    trainer, elapsed = interrupted_run(train_arguments(*args), tmp_path / "run", two_cached)
    output = assert_clean_stop(trainer, "Stopped while caching latents on SIGINT")
    kept = entries()
    total = int(re.search(r"caching latents: +\d+%\|[^|]*\| *\d+/(\d+)", output).group(1))
    # At most the entry being encoded when the signal came, and one that finished while it was being sent.
    assert len(kept) - counted["at_signal"] <= 2, (counted, len(kept), total)
    assert len(kept) < total
    for entry in kept:  # every entry kept is complete
        load_file(str(entry))
    assert not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".safetensors")]
    print(f"caching stop: {elapsed:.2f} s from the signal to the exit, {len(kept)} of {total} entries kept")


@pytest.mark.slow
def test_ctrl_c_while_sampling_stops_after_the_current_denoising_step(prepared, tmp_path):
    """A sample of 100000 denoising steps after step 1 (minutes even at a millisecond a step); the stop comes after
    the current step, with the step-1 backup, and the sample cut short is not written."""
    workspace, events = tmp_path / "workspace", tmp_path / "events.jsonl"
    samples = f"sampling.samples=[{sample_json(steps=100_000)}]"
    args = [*values(prepared, workspace), "training.max_steps=3", "sampling.every_steps=1", samples]
    command = train_arguments(*args, extra=("--events-file", str(events)))
    trainer, elapsed = interrupted_run(command, tmp_path / "run", wait_for_step(events, 1))
    output = assert_clean_stop(trainer, "Stopped at step 1 on SIGINT. Kept: backup")
    assert not (workspace / "samples").exists() or not list((workspace / "samples").iterdir())
    assert elapsed < 60, f"{elapsed:.1f} s from the signal to the exit: the sample was not cut short"
    assert [check_backup(f)["global_step"] for f in backup_folders(workspace / "backups")] == [1], output[-2000:]
    print(f"sampling stop: {elapsed:.2f} s from the signal to the exit")


@pytest.mark.slow
def test_ctrl_c_while_saving_finishes_the_save_and_skips_the_end_samples(prepared, tmp_path):
    """The trainer is frozen as it creates the final LoRA's temp file, the signal sent, and it let go: the save is
    completed (the file loads), then the run stops without writing the end sample."""
    workspace, out = tmp_path / "workspace", tmp_path / "out"
    out.mkdir()
    pid_file = tmp_path / "pid"
    freezer = start_freezer(out, ".lora.safetensors.", pid_file)
    args = [*values(prepared, workspace), f"output.output_path={out / 'lora.safetensors'}"]
    args.append(f"sampling.samples=[{sample_json()}]")
    trainer = RunningTrainer(train_arguments(*args), tmp_path / "run")
    try:
        (tmp_path / "pid.tmp").write_text(str(trainer.process.pid))
        (tmp_path / "pid.tmp").rename(pid_file)  # armed
        assert freezer.stdout.readline().startswith(".lora.safetensors."), trainer.output()[-3000:]
        os.kill(trainer.process.pid, signal.SIGINT)
        os.kill(trainer.process.pid, signal.SIGCONT)
        trainer.process.wait(timeout=300)
    finally:
        trainer.stop()
        freezer.kill()
        freezer.wait()
    output = assert_clean_stop(trainer, "Stopped while saving on SIGINT")
    assert f"Kept: the trained model ({out / 'lora.safetensors'}" in output
    reference = load_file(str(prepared["workspace"] / "output" / "lora.safetensors"))  # same settings and seed
    saved = load_file(str(out / "lora.safetensors"))
    assert saved.keys() == reference.keys() and all(torch.equal(saved[k], v) for k, v in reference.items())
    assert not (workspace / "samples").exists() or not list((workspace / "samples").iterdir())


# ---- settings that train nothing, process counts, the planner: refused before anything loads or starts ------------
def test_settings_that_train_nothing_are_refused_before_loading(prepared):
    before = snapshot(prepared["workspace"], prepared["cache"])
    done = train(*values(prepared), "data.concepts.0.loss_weight=0")
    assert_known_error(done, "data.concepts[0].loss_weight", "train nothing")
    # A layer filter is checked against the model's layer names, read from its headers before it loads.
    done = train(*values(prepared), "lora.layer_filter=blocks.7.")
    assert_known_error(done, "lora.layer_filter", "'blocks.7.'", "blocks.0.")
    assert "caching" not in done.stderr and "Loading" not in done.stderr
    # The other combinations the config shows to be no-ops (in-process: the same check at config load).
    data = json.loads(DEMO_PRESET.read_text())
    for override, named in (
        ("training.learning_rate=0", "training.learning_rate"),
        ("lora.alpha=0", "lora.alpha"),
        ('data.concepts=[{"path": "a", "loss_weight": 0}, {"path": "b", "loss_weight": 0}]', "concepts[1].loss_weight"),
    ):
        changed = json.loads(json.dumps(data))
        apply_override(changed, override)
        with pytest.raises(ConfigError, match=f"{re.escape(named)}.*train nothing.*Fix"):
            config_from_dict(changed)
    changed = json.loads(json.dumps(data))
    for override in ("model.variant=T2V-A14B", "experts.train=high_noise", "experts.high_noise_step_ratio=0"):
        apply_override(changed, override)
    with pytest.raises(ConfigError, match="experts.high_noise_step_ratio: 0 with experts.train=high_noise"):
        config_from_dict(changed)
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


def test_process_counts_and_nonsense_plans_are_refused_before_anything_starts(prepared):
    from modules.trainer.guards.process_count import check_process_count

    before = snapshot(prepared["workspace"], prepared["cache"])
    done = run_script(
        "train.py", "--config-path", str(DEMO_PRESET), *sum((["--config-value", v] for v in values(prepared)), []),
        "--num-processes", "1000",
    )  # fmt: skip
    assert_known_error(done, "--num-processes 1000", "each process needs one")
    assert "torch.distributed.run" not in done.stderr and "caching" not in done.stderr
    config = load_config(DEMO_PRESET, values(prepared))
    with pytest.raises(ConfigError, match="--num-processes 0: expected at least 1.*Fix"):
        check_process_count(0, config, cuda_devices=0, cpu_cores=4, available_bytes=None)
    with pytest.raises(ConfigError, match="--num-processes 3: this machine has 2 GPU"):
        check_process_count(3, config, cuda_devices=2, cpu_cores=64, available_bytes=None)
    # Each process holds the model's weight files in host memory while loading: N copies must fit what is free.
    with pytest.raises(ConfigError, match="--num-processes 2: each process loads the model.*--num-processes 1 or"):
        check_process_count(2, config, cuda_devices=0, cpu_cores=4, available_bytes=1_500_000)
    check_process_count(2, config, cuda_devices=0, cpu_cores=4, available_bytes=10**12)
    done = run_script("train.py", "--config-path", str(DEMO_PRESET), "--plan", "--vram", "0")
    assert_known_error(done, "--vram", "'0' is not a card's memory")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from train import positive_gb  # the same argument type, in-process for the other values
    finally:
        sys.path.remove(str(REPO / "scripts"))
    for vram in ("-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"'{vram}' is not a card's memory.*Fix"):
            positive_gb(vram)
    assert positive_gb("24") == 24.0
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


def test_broken_continue_from_is_refused_from_its_header_before_loading(prepared, tmp_path):
    before = snapshot(prepared["workspace"], prepared["cache"])
    good = (prepared["workspace"] / "output" / "lora.safetensors").read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    done = train(*values(prepared), f"lora.continue_from={truncated}")
    assert_known_error(done, "lora.continue_from", str(truncated), "truncated")
    assert "caching" not in done.stderr and "Loading" not in done.stderr
    other = other_model_lora(prepared, tmp_path / "t2v_lora.safetensors")
    done = train(*values(prepared), f"lora.continue_from={other}")
    message = assert_known_error(done, "lora.continue_from", str(other), "T2V-A14B", "TI2V-5B")
    assert "anyway" not in message and "caching" not in done.stderr  # no override exists for training
    assert snapshot(prepared["workspace"], prepared["cache"]) == before


def test_only_the_listed_library_notices_are_kept_off_the_terminal():
    """The three notices issue 23 saw, as the libraries word them, are recognised; a warning of the trainer's own or
    a library's real problem is not (it stays on the terminal)."""
    import logging

    from modules.trainer.reporting.library_messages import TerminalFilter

    def shown(message: str) -> bool:
        return TerminalFilter().filter(logging.LogRecord("x", logging.WARNING, __file__, 1, message, None, None))

    assert not shown(
        "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'. Please make sure "
        "you already `pip install kernels` and the kernels >= 0.11.1"
    )
    assert not shown(
        "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` for "
        "backward compatibility."
    )
    assert not shown(
        "There are modules in WanTransformer3DModel that should be kept in float32: ['norm']. Casting directly with "
        "`to()` can lead to inconsistent results"
    )
    assert shown("sample 0 (step000010) failed at step 10: start_image: 'x.png' is not a file")
    assert shown("Passed `torch_dtype` bf16 is not a `torch.dtype`. Defaulting to `torch.float32`.")
