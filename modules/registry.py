"""The one place that maps (model type, training method) to the plugin classes that implement it.

Adding a model family or method means adding a line here; nothing scans folders or registers on import.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modules.config.validation import ConfigError


@dataclass(frozen=True)
class Plugin:
    loader: type
    setup: type
    saver: type
    sampler: type
    data_loader: type


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


# Values are factories so that importing the registry does not import every plugin's dependencies.
PLUGINS = {
    ("wan_2_2", "lora"): _wan_lora,
    ("wan_2_2", "full"): _wan_full,
    ("wan_2_2", "embedding"): _wan_embedding,
}


def _wan_describe_source(path: str) -> str:
    """What a model path holds, in one line, or the loader's error (modules/wan/loading/describe.py)."""
    from modules.wan.loading.describe import describe_source

    return describe_source(path)


# What a model family's source paths hold, for the GUI's Model tab (it never imports a plugin itself).
SOURCE_DESCRIBERS = {"wan_2_2": _wan_describe_source}


def describe_source(model_type: str, path: str) -> str:
    return SOURCE_DESCRIBERS[model_type](path)


def plugin_for(model_type: str, training_method: str) -> Plugin:
    try:
        return PLUGINS[(model_type, training_method)]()
    except KeyError:
        known = ", ".join(f"{m}/{t}" for m, t in PLUGINS)
        raise ConfigError(
            f"model_type/training_method: {model_type}/{training_method} is not supported (supported: {known})"
        ) from None


def _wan_memory_facts():
    from modules.wan.memory_facts import memory_facts

    return memory_facts


# model_type -> factory of `facts(config) -> modules.memory.facts.ModelFacts` (the planner's view of a model).
MEMORY_FACTS = {"wan_2_2": _wan_memory_facts}


def memory_facts_for(config):
    try:
        facts = MEMORY_FACTS[config.model_type]()
    except KeyError:
        raise ConfigError(f"model_type: {config.model_type} has no memory facts for the planner") from None
    return facts(config)


def _wan_part_report():
    from modules.wan.part_report import describe_parts

    return describe_parts


# model_type -> factory of `describe(config) -> list[dict]`: each configured model part as the plugin detects it.
PART_REPORTS = {"wan_2_2": _wan_part_report}


def describe_parts_for(config) -> list[dict]:
    try:
        describe = PART_REPORTS[config.model_type]()
    except KeyError:
        raise ConfigError(f"model_type: {config.model_type} has no part detection for the diagnostics report") from None
    return describe(config)
