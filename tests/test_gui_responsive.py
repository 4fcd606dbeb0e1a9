"""The window is interactive within 2 s of launch, and Tk's thread is never kept from its loop for more than
200 ms while what used to freeze it runs: loading a preset, model detection, memory planning and a concept scan
(tests/gui_responsiveness_probe.py measures in a fresh process, with a 10 ms timer on Tk's loop). The longest
gap while the other tabs' widgets are still being built is printed, not asserted: that is customtkinter's
widget creation, sliced but not divisible below one list of sub-settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.gui_helpers import REPO

LAUNCH_TO_INTERACTIVE_S = 2.0
LONGEST_BLOCK_MS = 200
MAX_LOAD_PER_CORE = 2.0  # beyond this the bounds are not judged (a shared 2-core VM with 8 test runs on it)


@pytest.fixture(scope="module")
def display(gui_display):
    return gui_display


def test_interactive_within_2_s_and_never_blocked_over_200_ms(display, tiny_model_dir, demo_data_dir):
    model = tiny_model_dir("TI2V-5B")
    launched = time.time()
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "gui_responsiveness_probe.py"),
            str(launched),
            str(model),
            str(demo_data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    # The slow work really ran, in the background, and the window said so while it did.
    assert "TI2V-5B diffusers folder" in result["detected"]
    assert result["memory_hint"].startswith("peak ~")
    assert result["scanned"] > 0
    assert any("estimating memory" in text for text in result["busy_seen"])
    load_per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load_per_core > MAX_LOAD_PER_CORE:
        # Time bounds on a machine this busy measure the neighbours: the numbers above are printed, not judged.
        pytest.skip(f"load average {load_per_core:.1f} per core; timing bounds not judged ({result})")
    assert result["ready_s"] < LAUNCH_TO_INTERACTIVE_S
    assert result["max_gap_ms"] < LONGEST_BLOCK_MS
