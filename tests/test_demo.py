"""The quick-start demo, run exactly as the README says, twice: the second run reuses the cache."""

import os
import re
import subprocess
from pathlib import Path

import av
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parent.parent
CACHE_LINE = re.compile(r"cache: (\d+) training windows; (\d+) latents and (\d+) captions encoded now")


def run_demo(root: Path) -> str:
    env = {**os.environ, "WAN_DEMO_ROOT": str(root)}
    done = subprocess.run(
        ["bash", "scripts/run_demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return root, run_demo(root), run_demo(root)


def test_first_run_caches_trains_and_writes_lora_and_video(demo_runs):
    root, first, _ = demo_runs
    windows, latents_encoded, captions_encoded = map(int, CACHE_LINE.search(first).groups())
    assert windows > 0 and latents_encoded == windows and captions_encoded > 0

    lora_path = root / "run" / "output" / "lora.safetensors"
    assert f"model:  {lora_path}" in first
    lora = load_file(lora_path)
    assert lora and all(k.startswith("diffusion_model.blocks.") for k in lora)
    assert all(torch.isfinite(v).all() for v in lora.values())

    sample = next((root / "run" / "samples").glob("*.mp4"))
    assert f"sample: {sample}" in first
    with av.open(str(sample)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 17 and frames[0].shape == (64, 64, 3)

    events = EventAccumulator(str(root / "run" / "tensorboard")).Reload()
    losses = [e.value for e in events.Scalars("loss/train")]
    assert len(losses) >= 30 and all(torch.isfinite(torch.tensor(losses)))


def test_second_run_reuses_the_cache(demo_runs):
    _, first, second = demo_runs
    windows_first = int(CACHE_LINE.search(first).group(1))
    windows, latents_encoded, captions_encoded = map(int, CACHE_LINE.search(second).groups())
    assert windows == windows_first
    assert latents_encoded == 0 and captions_encoded == 0
