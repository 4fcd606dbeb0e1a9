"""lora.continue_from: start a LoRA run from the weights of an existing LoRA file (not from zero).

The file must be for this model: its spec (modelspec.architecture / wan.variant) and every matrix shape are
checked from its header before it is read (modules/wan/formats/lora_compatibility.py), and its rank and
layers must be the ones this run attaches. An A14B file pair is given by its stem, as for sampling.
"""

from __future__ import annotations

from modules.config.validation import ConfigError
from modules.module.lora import set_lora_state_dict
from modules.wan.formats.lora_compatibility import LoraCompatibilityError, check_lora_fits, linear_shapes
from modules.wan.formats.lora_file import EXPERT_FILE_SUFFIX, RANK_KEY, LoraFileError, load_lora_file
from modules.wan.formats.lora_pairs import LoraSpec, resolve_lora_files


def continue_lora_from(model, config) -> None:
    """Load `config.lora.continue_from` into the adapters just attached to the trained experts."""
    source = config.lora.continue_from
    if not source:
        return
    try:
        files = resolve_lora_files(LoraSpec(path=source), model.variant.has_transformer_2)
    except LoraFileError as error:
        raise ConfigError(f"lora.continue_from: {error}") from None
    for expert_name in model.trained_experts:
        path = files.get(expert_name)
        if path is None:
            raise ConfigError(
                f"lora.continue_from: {source} has no file for the {EXPERT_FILE_SUFFIX[expert_name]} expert, which "
                "this run trains. Fix: give the stem of a _high_noise/_low_noise pair, or set experts.train."
            )
        expert = getattr(model, expert_name)
        try:
            check_lora_fits(path, model.variant.name, linear_shapes(expert), override="a LoRA for this model")
            state_dict, metadata = load_lora_file(path)
        except (LoraCompatibilityError, LoraFileError) as error:
            raise ConfigError(f"lora.continue_from: {error}") from None
        if int(metadata[RANK_KEY]) != config.lora.rank:
            raise ConfigError(
                f"lora.continue_from: {path} has rank {metadata[RANK_KEY]}, this run lora.rank={config.lora.rank}. "
                f"Fix: set lora.rank to {metadata[RANK_KEY]}."
            )
        try:
            set_lora_state_dict(expert, state_dict)
        except KeyError as error:
            raise ConfigError(f"lora.continue_from: {path}: {error.args[0]} (lora.layer_filter)") from None
