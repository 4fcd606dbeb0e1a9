"""The one builder of run configs for tests: a tiny model on the CPU in float32, no TensorBoard, no samples.

Tests set what they exercise on the returned TrainConfig (or pass it here); everything else is the defaults a user
gets. Per-file helpers (test_training.lora_config, test_ema.lora_config, ...) are thin wrappers over it.
"""

from __future__ import annotations

from pathlib import Path

from modules.config.train_config import ConceptConfig, ModelConfig, TrainConfig


def tiny_run_config(
    base: Path,
    workspace: Path,
    concepts: list[dict] | None = None,
    *,
    method: str = "lora",
    resolution: int = 32,
    frames: int = 5,
    cache_dir: Path | None = None,
    text_max_length: int | None = None,
    **training,
) -> TrainConfig:
    """`concepts`: ConceptConfig fields per concept (at least `path`); `training`: training.* settings."""
    model = ModelConfig(base_path=str(base), transformer_dtype="float32", text_encoder_dtype="float32")
    if text_max_length is not None:
        model.text_max_length = text_max_length
    config = TrainConfig(model=model)
    config.training_method = method
    config.data.concepts = [ConceptConfig(**{**c, "path": str(c["path"])}) for c in concepts or []]
    config.data.resolution, config.data.frames = resolution, frames
    if cache_dir is not None:
        config.data.cache_dir = str(cache_dir)
    config.training.train_dtype, config.training.gradient_checkpointing, config.training.device = (
        "float32",
        False,
        "cpu",
    )
    for key, value in training.items():
        setattr(config.training, key, value)
    config.output.workspace_dir, config.output.tensorboard, config.output.save_dtype = str(workspace), False, "float32"
    config.sampling.samples = []
    return config
