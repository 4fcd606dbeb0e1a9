"""Where the repository's data files live (model configs and model specs), found from this file's place."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources"
MODEL_SPECS_DIR = RESOURCES_DIR / "model_specs"
MODEL_CONFIGS_DIR = RESOURCES_DIR / "model_configs"
