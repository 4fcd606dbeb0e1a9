"""LoRA settings checked from file headers before the model loads (the plugin's `check_config`):

- `lora.layer_filter` against the layer names of the transformer in `model.base_path` (a diffusers folder: its
  shards' headers list every linear), so a filter that matches nothing is refused in seconds, not after loading
  and caching. With a single-file transformer the same check runs when the adapters are attached.
- `lora.continue_from`: each file's header (truncated or not a safetensors file), the model it was made for, its
  rank and matrix shapes against this model's layers. The same checks run again on the loaded model.
"""

from __future__ import annotations

from pathlib import Path

from modules.config.validation import ConfigError
from modules.module.lora import filter_matcher, select_lora_names
from modules.wan.formats.lora_compatibility import LoraCompatibilityError, check_lora_fits, read_lora_info
from modules.wan.formats.lora_file import RANK_KEY, LoraFileError
from modules.wan.formats.lora_pairs import LoraSpec, resolve_lora_files
from modules.wan.loading.model_linears import model_folder_linears
from modules.wan.variants import VARIANTS


def check_lora_settings(config) -> None:
    variant, linears = _model_layers(config)
    layer_filter = config.lora.layer_filter
    if layer_filter:
        try:
            matches = filter_matcher(layer_filter)
        except ValueError as error:
            raise ConfigError(
                f"lora.layer_filter: {error}. Fix: correct the expression, or use a plain substring such as 'attn1'."
            ) from None
        targets = select_lora_names(sorted(linears)) if linears else []
        if targets and not any(matches(name) for name in targets):
            raise ConfigError(
                f"lora.layer_filter: {layer_filter!r} matches none of the {len(targets)} layers a LoRA can train in "
                f"{config.model.base_path}/transformer (names such as {targets[0]!r}), so the run would train "
                "nothing. Fix: widen it (e.g. 'blocks.0.,blocks.1.' or 'attn1'), or leave it empty for all."
            )
    if config.lora.continue_from:
        _check_continue_from(config, variant, linears)


def _model_layers(config) -> tuple[str | None, dict[str, tuple[int, int]]]:
    """(variant name, linear name -> shape) from a local diffusers folder's headers; (None, {}) when not knowable
    yet (a hub id, or a transformer from a file of its own)."""
    base = Path(config.model.base_path)
    own_transformer = config.model.transformer_path or config.model.transformer_2_path
    if own_transformer or not (base / "transformer").is_dir() or not (base / "model_index.json").is_file():
        variant = config.model.variant if config.model.variant in VARIANTS else None
        return variant, {}
    return model_folder_linears(base)  # ModelLoadError (a UserError) when the folder's parts do not fit


def _check_continue_from(config, variant: str | None, linears: dict[str, tuple[int, int]]) -> None:
    """With the model's variant unknown before loading (model.variant auto and no local folder), the file's header
    is still read (a truncated file is refused); its model and shapes are then checked at set-up."""
    source = config.lora.continue_from
    two_experts = variant is not None and VARIANTS[variant].has_transformer_2
    try:
        files = resolve_lora_files(LoraSpec(path=source), two_experts)
    except LoraFileError as error:
        if variant is None:
            return  # perhaps an A14B pair's stem: resolved at set-up, when the variant is known
        raise ConfigError(f"lora.continue_from: {error}") from None
    for path in dict.fromkeys(files.values()):
        try:
            info = (
                read_lora_info(path)
                if variant is None
                else check_lora_fits(path, variant, linears or None, override=None)
            )
        except LoraCompatibilityError as error:
            raise ConfigError(f"lora.continue_from: {error}") from None
        rank = info.metadata.get(RANK_KEY)
        if rank is not None and rank.isdigit() and int(rank) != config.lora.rank:
            raise ConfigError(
                f"lora.continue_from: {path} has rank {rank}, this run lora.rank={config.lora.rank}. "
                f"Fix: set lora.rank to {rank}."
            )
