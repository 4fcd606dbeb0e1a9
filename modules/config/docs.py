"""Renders docs/configuration.md from the field declarations, so the document cannot drift from the code."""

from __future__ import annotations

from modules.config.fields import describe
from modules.config.train_config import ConceptConfig, SampleConfig, TrainConfig


def _table(config_class: type) -> list[str]:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for row in describe(config_class):
        allowed = ", ".join(map(str, row["choices"])) if row["choices"] else ""
        if row["min"] is not None or row["max"] is not None:
            allowed = f"{'' if row['min'] is None else row['min']} .. {'' if row['max'] is None else row['max']}"
        default = "required" if row["required"] else f"`{row['default']!r}`"
        lines.append(f"| `{row['name']}` | {row['type']} | {default} | {allowed} | {row['help']} |")
    return lines


def render_configuration_doc() -> str:
    parts = [
        "# Configuration",
        "",
        "Generated from modules/config/train_config.py by `python scripts/make_config_docs.py`; do not edit by hand.",
        "A config is a JSON object; unknown keys, wrong types and out-of-range values are errors that name the key.",
        "Override any key on the command line: `--config-value training.max_steps=100` (lists by index: "
        "`data.concepts.0.path=clips`).",
        "",
        "## Training config",
        "",
        *_table(TrainConfig),
        "",
        "## A concept (an item of `data.concepts`)",
        "",
        *_table(ConceptConfig),
        "",
        "## A sample (an item of `sampling.samples`)",
        "",
        *_table(SampleConfig),
        "",
    ]
    return "\n".join(parts)
