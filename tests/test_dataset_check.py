"""`scripts/dataset.py check` agrees with what a training run then caches: the same files kept and skipped, and
the same windows (each window's cache key, which names its source frames and bucket, is the one training wrote)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dataset_cli import load_cli

from modules.config.loading import config_from_dict
from modules.data.flow.report import DataReport
from modules.data.flow.stages import CacheLatents
from modules.data.sources.demo_data import DemoClip, write_clip
from modules.dataset_tools.check import check_concepts, plan_items
from modules.dataset_tools.data_settings import from_train_config
from modules.wan.loading.loader import load_wan_model
from modules.wan.training.data_loader import WanBaseDataLoader
from modules.wan.vae_tiling import tiling_identity

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_and_config(tiny_model_dir, demo_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    data = root / "data"
    shutil.copytree(demo_data_dir, data)
    (data / "broken.mp4").write_text("not a video")
    (data / "broken.txt").write_text("a caption for a broken file")
    no_caption = write_clip(DemoClip("no_caption", "circle", "red", "blue", 64, 64, 20, 24), data)
    no_caption.with_suffix(".txt").unlink()
    settings = {
        "model": {"base_path": str(tiny_model_dir("TI2V-5B"))},
        "data": {
            "concepts": [{"path": str(data)}, {"path": str(data), "flip": True, "frames": 9, "repeats": 2}],
            "resolution": 64,
            "frames": 17,
            "extraction_mode": "chunk",
            "max_windows_per_video": 2,
            "min_frames": 5,
        },
        "output": {"workspace_dir": str(root / "run")},
    }
    return data, settings


def test_check_lists_what_training_caches(data_and_config, tiny_model_dir):
    data, settings = data_and_config
    config = config_from_dict(settings)
    plans = from_train_config(config)
    report = check_concepts(plans)

    model = load_wan_model(
        tiny_model_dir("TI2V-5B"),
        transformer_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        vae_dtype=torch.float32,
    )
    loader = WanBaseDataLoader()
    loader.prepare(model, config, torch.device("cpu"))

    trained = {Path(f["path"]) for c in report["concepts"] for f in c["files"]}
    assert trained == {s.source for s in loader.samples}
    checked_skips = sorted((s["path"], s["category"]) for c in report["concepts"] for s in c["skipped"])
    assert checked_skips == sorted((str(s.path), s.category) for s in loader.report.skipped)
    assert {Path(p) for p, _ in checked_skips} == {data / "broken.mp4", data / "no_caption.mp4"}
    assert report["totals"]["samples_per_epoch"] == len(loader.samples)

    # The same windows: the cache keys of check's items (source frames, bucket, flip, frames-as-shown rule).
    identity = f"{model.vae_identity}:{model.vae.dtype}:{model.variant.image_conditioning}" + tiling_identity(model.vae)
    keyer = CacheLatents(None, None, identity, DataReport())
    expected = []
    for plan, concept in zip(plans, config.data.concepts):
        for item in plan_items(plan, DataReport()):
            expected += [keyer.key(item)] * concept.repeats
    assert sorted(expected) == sorted(s.latent_key for s in loader.samples)
    windows = [len(f["windows"]) for c in report["concepts"] for f in c["files"]]
    assert sum(windows) == report["totals"]["windows"] and max(windows) > 1  # chunk mode: several per clip

    coverage = report["totals"]["caption_coverage"]
    media = len([p for p in data.iterdir() if p.suffix in (".mp4", ".png")])
    assert coverage == {
        "media_files": 2 * media,
        "with_caption": 2 * (media - 1),
        "ratio": round((media - 1) / media, 4),
    }


@pytest.mark.slow  # a CLI subprocess imports torch: about 20 s on the shared machine
def test_cli_prints_text_and_json(data_and_config, tmp_path, capsys):
    data, settings = data_and_config
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(settings))
    script = [sys.executable, str(REPO / "scripts" / "dataset.py"), "check"]
    as_json = subprocess.run([*script, "--config", str(config_path), "--json"], capture_output=True, text=True)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["totals"]["files_skipped"] == 2
    # The same entry point in this process (a subprocess costs a torch import): text for a folder, a bad input.
    cli = load_cli()
    assert cli.main(["check", str(data), "--fps", "16", "--frames", "17"]) == 0
    text = capsys.readouterr().out
    assert "SKIPPED" in text and "broken.mp4" in text and "captions:" in text
    assert cli.main(["check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err
