"""The one place that names the model families and what each provides to the generic code.

A model family is one `ModelFamily` record in `FAMILIES` (and its name in `TrainConfig.model_type`'s choices); nothing
scans folders or registers on import. docs/architecture.md "Extending" says what a new family writes. Every entry
is a factory or a function that imports the plugin when called, so importing the registry imports no plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from modules.util.errors import ConfigError


@dataclass(frozen=True)
class Plugin:
    """The plugin's classes for one (model family, training method): see modules/base/."""

    loader: type
    setup: type
    saver: type
    sampler: type
    data_loader: type


@dataclass(frozen=True)
class ModelFamily:
    """Everything one model family provides: its training methods and what the planner, the diagnostics report,
    the GUI and the benchmarks ask of it."""

    name: str
    # training_method -> factory of the Plugin (the classes of modules/base/ the trainer calls).
    methods: dict[str, Callable[[], Plugin]]
    # path -> one line saying what a model source holds (the GUI's Model tab; it never imports a plugin).
    describe_source: Callable[[str], str]
    # factory of `facts(config) -> modules.memory.facts.ModelFacts` (the planner's view of a model).
    memory_facts: Callable[[], Callable[[Any], Any]]
    # factory of `describe(config) -> list[dict]`: each configured model part as detected (diagnostics report).
    describe_parts: Callable[[], Callable[[Any], list[dict]]]
    # factory of the benchmark kit: `latent_shape(config, height, width)`, `transformer_facts(config)` and
    # `benchmark_model(config, device, dtype, fp8, tiny)` (modules/benchmark/runner.py).
    benchmark_kit: Callable[[], Any]
    # factory of `facts(config) -> (fps, pixel_multiple)`: the rate and pixel multiple the model trains at, before
    # anything loads (the dataset tools build a run's data settings with them: modules/dataset_tools/).
    data_facts: Callable[[], Callable[[Any], tuple[float, int]]]


# ---- WAN 2.2 ------------------------------------------------------------------------------------------
def _wan_lora() -> Plugin:
    from modules.wan.sampling.sampler import WanModelSampler
    from modules.wan.saving.lora_saver import WanLoRASaver
    from modules.wan.training.data_loader import WanBaseDataLoader
    from modules.wan.training.lora_setup import WanLoRASetup
    from modules.wan.training.model_loader import WanTrainingModelLoader

    # Every method loads embedding.frozen_embeddings (and "embedding" its trained one) right after the model.
    return Plugin(WanTrainingModelLoader, WanLoRASetup, WanLoRASaver, WanModelSampler, WanBaseDataLoader)


def _wan_full() -> Plugin:
    from modules.wan.saving.full_saver import WanFineTuneSaver
    from modules.wan.training.full_setup import WanFineTuneSetup

    return replace(_wan_lora(), setup=WanFineTuneSetup, saver=WanFineTuneSaver)


def _wan_embedding() -> Plugin:
    from modules.wan.saving.embedding_saver import WanEmbeddingSaver
    from modules.wan.training.embedding_setup import WanEmbeddingSetup

    return replace(_wan_lora(), setup=WanEmbeddingSetup, saver=WanEmbeddingSaver)


def _wan_describe_source(path: str) -> str:
    from modules.wan.loading.describe import describe_source

    return describe_source(path)


def _wan_memory_facts():
    from modules.wan.memory_facts import memory_facts

    return memory_facts


def _wan_part_report():
    from modules.wan.part_report import describe_parts

    return describe_parts


def _wan_benchmark_kit():
    from modules.wan import benchmark_kit

    return benchmark_kit


def _wan_data_facts():
    from modules.wan.loading.describe import data_facts

    return data_facts


FAMILIES = {
    "wan_2_2": ModelFamily(
        name="wan_2_2",
        methods={"lora": _wan_lora, "full": _wan_full, "embedding": _wan_embedding},
        describe_source=_wan_describe_source,
        memory_facts=_wan_memory_facts,
        describe_parts=_wan_part_report,
        benchmark_kit=_wan_benchmark_kit,
        data_facts=_wan_data_facts,
    ),
}

# (model_type, training_method) -> factory of the Plugin, for callers that iterate over every combination.
PLUGINS = {(family.name, method): factory for family in FAMILIES.values() for method, factory in family.methods.items()}


def family_for(model_type: str) -> ModelFamily:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ConfigError(
            f"model_type: {model_type!r} is not a registered model family (known: {', '.join(FAMILIES)})"
        ) from None


def plugin_for(model_type: str, training_method: str) -> Plugin:
    try:
        return PLUGINS[(model_type, training_method)]()
    except KeyError:
        known = ", ".join(f"{m}/{t}" for m, t in PLUGINS)
        raise ConfigError(
            f"model_type/training_method: {model_type}/{training_method} is not supported (supported: {known})"
        ) from None


def describe_source(model_type: str, path: str) -> str:
    return family_for(model_type).describe_source(path)


def memory_facts_for(config):
    return family_for(config.model_type).memory_facts()(config)


def describe_parts_for(config) -> list[dict]:
    return family_for(config.model_type).describe_parts()(config)


def benchmark_kit_for(config):
    return family_for(config.model_type).benchmark_kit()


def data_facts_for(config) -> tuple[float, int]:
    return family_for(config.model_type).data_facts()(config)


def default_family() -> ModelFamily:
    """The family the tools use when they have no config (the GPU acceptance stages): the first one."""
    return next(iter(FAMILIES.values()))
