"""A concept's own data settings, carried as one typed object: its folder and caption rules, its resolution, frame
count and flip (overriding the run's data.*), and its loss weight."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from modules.data.flow.video_dataset import DatasetSettings
from modules.data.sources.concepts import Concept


@dataclass(frozen=True)
class ConceptPlan:
    """Everything the cached data loader needs of one data.concepts[] entry."""

    concept: Concept
    settings: DatasetSettings
    loss_weight: float = 1.0


def concept_settings(settings: DatasetSettings, concept_config) -> DatasetSettings:
    """`settings` with this concept's overrides; a concept without any gets `settings` unchanged (same cache keys)."""
    changes = {"flip": bool(concept_config.flip), "on_missing_mask": concept_config.on_missing_mask}
    if concept_config.resolution is not None:
        changes["target_area"] = concept_config.resolution * concept_config.resolution
    if concept_config.frames is not None:
        changes["window_frames"] = concept_config.frames
    return dataclasses.replace(settings, **changes)


def concept_of(concept_config) -> Concept:
    """The folder and caption rules of a data.concepts[] entry."""
    return Concept(
        path=Path(concept_config.path),
        repeats=concept_config.repeats,
        caption_source=concept_config.caption_source,
        caption_text=concept_config.caption_text,
        on_missing_caption=concept_config.on_missing_caption,
        include_subdirectories=concept_config.include_subdirectories,
    )


def concept_plan(concept_config, run_settings: DatasetSettings) -> ConceptPlan:
    return ConceptPlan(
        concept_of(concept_config), concept_settings(run_settings, concept_config), concept_config.loss_weight
    )
