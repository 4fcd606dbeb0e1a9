"""The concepts and data settings the dataset tools use: a training config's, exactly as a training run builds
them (so `check` and `caption` see the windows training will cache), or a folder with settings given directly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.data.flow.video_dataset import DatasetSettings, settings_from_config
from modules.data.sources.concept_options import concept_of, concept_settings
from modules.data.sources.concepts import Concept


@dataclass(frozen=True)
class LabelledConcept:
    """A concept with its settings and the name the tools report it under."""

    concept: Concept
    settings: DatasetSettings
    label: str  # "data.concepts[0]" or the folder


def from_config(config_path: Path, overrides: list[str] = ()) -> list[LabelledConcept]:
    """Every concept of a training config with its settings, built as WanBaseDataLoader.prepare builds them."""
    from modules.config.loading import load_config

    return from_train_config(load_config(config_path, list(overrides)))


def from_train_config(config) -> list[LabelledConcept]:
    from modules.registry import data_facts_for

    data = config.data
    base = settings_from_config(data, *data_facts_for(config))
    return [
        LabelledConcept(concept_of(c), concept_settings(base, c), f"data.concepts[{i}]")
        for i, c in enumerate(data.concepts)
        if c.enabled  # check and caption see what trains
    ]


def from_folders(folders: list[Path], settings: DatasetSettings, include_subdirectories: bool = False):
    return [
        LabelledConcept(Concept(path=Path(f), include_subdirectories=include_subdirectories), settings, str(f))
        for f in folders
    ]
