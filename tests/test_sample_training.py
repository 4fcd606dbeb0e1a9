"""Samples and validation loss during a real (tiny) training run, and a sample that fails while training goes on."""

from __future__ import annotations

import json
import logging
import math

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from modules.config.loading import config_from_dict
from modules.data.sources.demo_data import DEMO_CLIPS, make_demo_data
from modules.trainer.generic_trainer import GenericTrainer

QUANTILES = [0.25, 0.75]


def tiny_run_config(model_dir, data_dir, validation_dir, workspace, start_image) -> dict:
    sample = {"prompt": "a red circle moves", "width": 64, "height": 64, "frames": 5, "seed": 1, "steps": 2}
    return {
        "version": 1,
        "model_type": "wan_2_2",
        "training_method": "lora",
        "model": {
            "base_path": str(model_dir),
            "variant": "TI2V-5B",
            "transformer_dtype": "float32",
            "text_encoder_dtype": "float32",
            "vae_dtype": "float32",
            "text_max_length": 64,
        },
        "lora": {"rank": 4, "alpha": 4.0},
        "data": {
            "concepts": [{"path": str(data_dir)}],
            "resolution": 64,
            "frames": 9,
            "extraction_mode": "chunk",
            "max_windows_per_video": 1,
        },
        "training": {
            "max_steps": 4,
            "batch_size": 1,
            "learning_rate": 1e-3,
            "train_dtype": "float32",
            "gradient_checkpointing": False,
            "seed": 3,
            "device": "cpu",
        },
        "output": {"workspace_dir": str(workspace)},
        "sampling": {
            "samples": [sample, {**sample, "prompt": "from an image", "start_image": str(start_image)}],
            "sample_before_training": True,
            "every_steps": 2,
            "sample_at_end": True,
            "validation_concept": str(validation_dir),
            "validation_every_steps": 2,
            "validation_quantiles": QUANTILES,
        },
    }


def test_samples_on_schedule_validation_per_quantile_and_a_failing_sample(tiny_model_dir, tmp_path, caplog, capsys):
    data_dir, validation_dir = tmp_path / "data", tmp_path / "validation"
    make_demo_data(data_dir, DEMO_CLIPS[:2])
    make_demo_data(validation_dir, DEMO_CLIPS[3:4])  # held out: not in the training concept
    start_image = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(start_image)
    workspace = tmp_path / "run"
    config = config_from_dict(
        tiny_run_config(tiny_model_dir("TI2V-5B"), data_dir, validation_dir, workspace, start_image)
    )
    start_image.unlink()  # a real failure at sampling time: the image went away after the config was validated

    trainer = GenericTrainer(config)
    with caplog.at_level(logging.WARNING, logger="wan_trainer.samples"):
        result = trainer.train()

    # Training went on through every failing sample and finished.
    assert result.steps == 4 and len(result.losses) == 4 and (workspace / "output").is_dir()
    assert trainer.sample_hooks.failures == 3  # before, step 2, end
    assert "start_image" in caplog.text and "failed" in caplog.text
    assert "sample 1 failed at step 2" in capsys.readouterr().out

    # Sample 0 before the first step, every 2 steps, and at the end (step 4 once, not twice), each with a sidecar.
    videos = sorted(p.name for p in (workspace / "samples").glob("*.mp4"))
    assert videos == ["before-step000000-0.mp4", "end-step000004-0.mp4", "step000002-0.mp4"]
    steps = {json.loads((workspace / "samples" / v).with_suffix(".json").read_text())["step"] for v in videos}
    assert steps == {0, 2, 4}

    events = EventAccumulator(str(workspace / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [e.step for e in events.Images("samples/0")] == [0, 2, 4]
    logged = {q: [(e.step, e.value) for e in events.Scalars(f"loss/validation/sigma_{q:.2f}")] for q in QUANTILES}
    for q in QUANTILES:
        assert [step for step, _ in logged[q]] == [2, 4] and all(math.isfinite(v) and v > 0 for _, v in logged[q])
    assert logged[0.25][-1][1] != logged[0.75][-1][1]  # one number per noise level, not one repeated

    # Fixed noise, fixed clips: measuring the final model again gives the logged numbers.
    again = trainer.sample_hooks.validation.measure(trainer.model, trainer.setup, trainer.progress)
    for q in QUANTILES:
        assert abs(again[q] - logged[q][-1][1]) <= 1e-6 * max(1.0, again[q])
