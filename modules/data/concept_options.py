"""A concept's own data settings: its resolution, frame count and flip override the run's (data.*)."""

from __future__ import annotations

import dataclasses

from modules.data.video_dataset import DatasetSettings


def concept_settings(settings: DatasetSettings, concept_config) -> DatasetSettings:
    """`settings` with this concept's overrides; a concept without any gets `settings` unchanged (same cache keys)."""
    changes = {"flip": bool(concept_config.flip), "on_missing_mask": concept_config.on_missing_mask}
    if concept_config.resolution is not None:
        changes["target_area"] = concept_config.resolution * concept_config.resolution
    if concept_config.frames is not None:
        changes["window_frames"] = concept_config.frames
    return dataclasses.replace(settings, **changes)
