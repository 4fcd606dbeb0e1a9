"""lora.continue_from: start a LoRA run from the weights of an existing LoRA file (not from zero).

The file must be for this model: its spec (modelspec.architecture / wan.variant) and every matrix shape are
checked from its header before it is read (modules/wan/formats/lora_compatibility.py), and the adapter it
holds must be the one this run attaches: type, rank, DoRA and LoKr's factor, as recorded in the file
(formats/adapter_settings.py) or inferred from an older one. An A14B file pair is given by its stem, as for
sampling.
"""

from __future__ import annotations

from modules.config.validation import ConfigError
from modules.module.lora import set_lora_state_dict
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.adapter_settings import AdapterSettings
from modules.wan.formats.lora_compatibility import LoraCompatibilityError, check_lora_fits, linear_shapes
from modules.wan.formats.lora_file import EXPERT_FILE_SUFFIX, LoraFileError
from modules.wan.formats.lora_pairs import LoraSpec, resolve_lora_files
from modules.wan.formats.lycoris_keys import VariantFileError


def _differences(file: AdapterSettings, lora_config) -> list[str]:
    """`lora.<setting>=<file's value>` for each setting of this run that differs from the file's adapter."""
    wanted = {"type": file.type, "rank": file.rank, "use_dora": file.use_dora}
    if file.type == "lokr":
        wanted["factor"] = file.factor
    return [f"lora.{k}={str(v).lower()}" for k, v in wanted.items() if getattr(lora_config, k) != v]


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
            check_lora_fits(path, model.variant.name, linear_shapes(expert), override=None)
            settings, state_dict, _ = read_adapter_file(path)
        except (LoraCompatibilityError, LoraFileError, VariantFileError) as error:
            raise ConfigError(f"lora.continue_from: {error}") from None
        differences = _differences(settings, config.lora)
        if differences:
            raise ConfigError(
                f"lora.continue_from: {path} holds a {settings.type} adapter of rank {settings.rank}"
                f"{' with DoRA' if settings.use_dora else ''}"
                f"{f' and factor {settings.factor}' if settings.type == 'lokr' else ''}, which this run's lora "
                f"settings do not attach. Fix: set {', '.join(differences)}."
            )
        try:
            set_lora_state_dict(expert, state_dict)
        except KeyError as error:
            raise ConfigError(f"lora.continue_from: {path}: {error.args[0]} (lora.layer_filter)") from None
