"""Loading a single file into bf16 adds about the model's own size to resident memory, nothing like a full copy.

Runs the benchmark (scripts/benchmark_single_file_load.py) at a small size: a fresh process loads a ~150 MB
random transformer file through our loader. A loader that held a state dict of the file beside the model would
measure ~2, one that went through float32 ~3; the bound leaves room for allocator noise at this small size.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from benchmark_single_file_load import run  # noqa: E402


@pytest.mark.parametrize("file_dtype", ["bf16", "fp8_scaled"])
def test_single_file_load_peak_memory_is_about_the_model(file_dtype):
    result = run(layers=4, heads=8, file_dtype=file_dtype)
    assert result["model_bytes"] > 100 << 20  # large enough that a copy could not hide in the noise
    assert result["ratio"] < 1.4, result
