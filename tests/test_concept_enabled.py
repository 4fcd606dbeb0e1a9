"""`data.concepts[].enabled`: a switched-off concept stays in the config but nothing reads or trains it (the window's
concept cards switch it). The run itself skipping one whose folder does not exist is tests/test_gui_concepts.py."""

from __future__ import annotations

import pytest

from modules.config.loading import check_consistency
from modules.config.no_op import check_trains_something
from modules.config.train_config import ConceptConfig, ModelConfig, TrainConfig
from modules.config.validation import ConfigError, from_dict, to_dict
from modules.data.flow.cached_loader import CachedDataLoader
from modules.dataset_tools.data_settings import from_train_config


def config_with(tmp_path, *concepts: dict) -> TrainConfig:
    config = TrainConfig(model=ModelConfig(base_path=str(tmp_path / "model"), variant="TI2V-5B"))
    config.data.concepts = [ConceptConfig(**c) for c in concepts]
    return config


def test_enabled_defaults_to_on_and_round_trips(tmp_path):
    config = config_with(tmp_path, {"path": "a"}, {"path": "b", "enabled": False})
    assert [c.enabled for c in config.data.concepts] == [True, False]
    again = from_dict(TrainConfig, to_dict(config))
    assert [c.enabled for c in again.data.concepts] == [True, False]


def test_every_concept_switched_off_is_refused_naming_them(tmp_path):
    config = config_with(tmp_path, {"path": "a", "enabled": False}, {"path": "b", "enabled": False})
    with pytest.raises(ConfigError, match=r"data.concepts\[0\].enabled, data.concepts\[1\].enabled: every concept"):
        check_consistency(config)


def test_a_switched_off_concept_is_not_checked_listed_or_counted(tmp_path):
    (tmp_path / "on").mkdir()
    off, on = {"path": str(tmp_path / "missing"), "enabled": False}, {"path": str(tmp_path / "on")}
    config = config_with(tmp_path, off, on)
    # its folder does not exist: the source check before loading does not look at it
    CachedDataLoader.check_sources(None, config)
    # the dataset check lists only what trains, under the concept's own index
    assert [plan.label for plan in from_train_config(config)] == ["data.concepts[1]"]
    # a switched-off concept's weight does not count towards "every weight is 0"
    config.data.concepts[1].loss_weight = 0.0
    with pytest.raises(ConfigError, match=r"^data.concepts\[1\].loss_weight: 0"):
        check_trains_something(config)
    config.data.concepts[0].enabled, config.data.concepts[1].loss_weight = True, 1.0
    with pytest.raises(Exception, match="missing"):
        CachedDataLoader.check_sources(None, config)
