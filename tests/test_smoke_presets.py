"""Every real preset's settings run end to end on the tiny model of its variant (scripts/smoke_presets.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_real_preset_trains_two_steps_and_samples_on_this_device(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "smoke_presets.py"), "--device", "cpu", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    results = json.loads(out.read_text())
    presets = sorted(p.name for p in (REPO / "training_presets").glob("wan22_*.json"))
    assert sorted(r["preset"] for r in results) == presets
    for result in results:
        assert result["status"] == "ok", result
        assert result["outputs"] and all(Path(p).suffix == ".safetensors" for p in result["outputs"])
        assert len(result["samples"]) >= 1
        # Whatever was replaced is named with its reason, never dropped silently.
        assert all("(" in line or ":" in line for line in result["replaced"])
