"""Config loading: validation messages name the file, key, value and what is allowed."""

import json

import pytest

from modules.config.fields import describe
from modules.config.loading import load_config
from modules.config.train_config import TrainConfig
from modules.config.validation import ConfigError

MINIMAL = {"model": {"base_path": "models/x"}, "data": {"concepts": [{"path": "clips"}]}}


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_minimal_config_gets_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.model.base_path == "models/x"
    assert config.data.concepts[0].repeats == 1
    assert config.training.learning_rate == 1e-4


def test_presets_all_load():
    from pathlib import Path

    presets = sorted((Path(__file__).parent.parent / "training_presets").glob("*.json"))
    assert presets
    for preset in presets:
        assert isinstance(load_config(preset), TrainConfig)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate: expected a number, got 'fast'"),
        ({"training": {"max_steps": 1.5}}, "training.max_steps: expected a whole number, got 1.5"),
        ({"training": {"gradient_checkpointing": 1}}, "training.gradient_checkpointing: expected true or false, got 1"),
        (
            {"training": {"optimizer": "sgd"}},
            "training.optimizer: 'sgd' is not allowed. Choose one of: adamw, adamw_8bit, paged_adamw",
        ),
        ({"lora": {"rank": 0}}, "lora.rank: 0 is out of range; allowed: from 1 to 1024"),
        (
            {"lora": {"rnak": 4}},
            "lora.rnak: unknown key. Allowed keys here: "
            "alpha, continue_from, dropout, factor, layer_filter, rank, type, use_dora",
        ),
        ({"data": {"concepts": [{"path": "a"}], "frames": 80}}, "data.frames: 80 is not 4n+1; use 77 or 81"),
        ({"data": {"concepts": []}}, "data.concepts: at least one concept is needed"),
        ({"data": {"concepts": [{"repeats": 2}]}}, "data.concepts[0].path: required"),
    ],
)
def test_bad_values_are_named(tmp_path, change, expected):
    data = json.loads(json.dumps(MINIMAL))
    for section, values in change.items():
        data[section] = {**data.get(section, {}), **values}
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, data))
    assert str(error.value).startswith(str(tmp_path / "config.json"))
    assert expected in str(error.value)


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{"model": {"base_path": "x",}\n}')
    with pytest.raises(ConfigError, match=r"config.json: not valid JSON at line 1, column 29"):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.json")


def test_overrides_are_validated_like_the_file(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_config(path, ["training.max_steps=7", "data.concepts.0.path=other", "model.variant=TI2V-5B"])
    assert (config.training.max_steps, config.data.concepts[0].path, config.model.variant) == (7, "other", "TI2V-5B")
    with pytest.raises(ConfigError, match="training.max_steps: expected a whole number, got 'many'"):
        load_config(path, ["training.max_steps=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["training.max_steps"])


def test_concepts_file_is_relative_to_the_config(tmp_path):
    (tmp_path / "concepts.json").write_text(json.dumps([{"path": "clips_a", "repeats": 3}]))
    data = {"model": {"base_path": "x"}, "data": {"concepts_file": "concepts.json"}}
    config = load_config(write(tmp_path, data))
    assert [(c.path, c.repeats) for c in config.data.concepts] == [("clips_a", 3)]


def test_version_0_is_migrated_and_newer_versions_refused(tmp_path):
    old = {**MINIMAL, "version": 0, "lora_rank": 4, "lora_alpha": 2.0}
    config = load_config(write(tmp_path, old))
    assert (config.version, config.lora.rank, config.lora.alpha) == (1, 4, 2.0)
    with pytest.raises(ConfigError, match="version 99 was written by a newer trainer"):
        load_config(write(tmp_path, {**MINIMAL, "version": 99}))


def test_fields_describe_themselves_for_a_gui():
    rows = {row["name"]: row for row in describe(TrainConfig)}
    assert (
        rows["training.optimizer"]["choices"][:2] == ("adamw", "adamw_8bit")
        and "prodigy" in rows["training.optimizer"]["choices"]
    )
    # Each optimizer's own settings are fields too, with their ranges (the GUI shows them per optimizer).
    assert rows["training.prodigy.d_coef"]["min"] == 0.0 and rows["training.lion.beta2"]["default"] == 0.99
    assert rows["lora.type"]["choices"] == ("lora", "loha", "lokr") and rows["lora.use_dora"]["default"] is False
    assert rows["lora.rank"]["min"] == 1 and rows["lora.rank"]["default"] == 32
    assert all(row["help"] for row in rows.values())


def test_configuration_doc_is_current():
    from pathlib import Path

    from modules.config.docs import render_configuration_doc

    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == render_configuration_doc(), "run: python scripts/make_config_docs.py"
