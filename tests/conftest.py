"""Shared fixtures: tiny real-class WAN models written to disk once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from modules.wan.tiny_models import write_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """`tiny_model_dir("TI2V-5B")` -> path of a tiny diffusers folder of that variant (built once)."""
    built: dict[str, Path] = {}

    def get(variant_name: str = "TI2V-5B") -> Path:
        if variant_name not in built:
            root = tmp_path_factory.mktemp("tiny_models")
            built[variant_name] = write_tiny_model(variant_name, root / variant_name)
        return built[variant_name]

    return get
