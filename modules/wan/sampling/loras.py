"""LoRAs (a weight per LoRA and per expert) and embeddings for sampling a base model.

LoRA files are read with formats/lora_file.load_lora_file (ComfyUI or diffusers layout, alpha kept) and attached
as named peft adapters, the same layers diffusers' loader would create; each expert gets its own weight
through diffusers' `set_adapters`. An A14B LoRA saved by this trainer is a pair of files
`<stem>_high_noise.safetensors` / `<stem>_low_noise.safetensors`; giving `<stem>.safetensors` finds both
(formats/lora_pairs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.module.dora import remove_dora
from modules.module.lora import attach_lora, set_lora_state_dict
from modules.wan.formats.lora_compatibility import check_lora_fits, linear_shapes
from modules.wan.formats.lora_file import ALPHA_KEY, DORA_SUFFIX, EXPERT_FILE_SUFFIX, RANK_KEY, load_lora_file
from modules.wan.formats.lora_pairs import LoraSpec, resolve_lora_files
from modules.wan.formats.lycoris_keys import (
    file_rank_and_alpha,
    from_comfyui_variant_state_dict,
    is_variant_file,
    read_tensors,
)
from modules.wan.model import WanModel
from modules.wan.sampling.settings import SampleError
from modules.wan.variants import HIGH, LOW


@dataclass(frozen=True)
class LoadedLora:
    adapter: str
    spec: LoraSpec
    files: dict[str, Path]  # expert attribute name -> file
    weights: dict[str, float]

    def sidecar(self) -> dict:
        return {
            "path": self.spec.path,
            "files": {EXPERT_FILE_SUFFIX[e]: str(p) for e, p in self.files.items()},
            "weights": {EXPERT_FILE_SUFFIX[e]: w for e, w in self.weights.items()},
        }


def parse_lora_argument(text: str) -> LoraSpec:
    """`PATH`, `PATH=W` or `PATH=W_HIGH,W_LOW` (the command-line form; '=' because ':' is in Windows paths)."""
    path, sep, weights = text.rpartition("=")
    if not sep:
        return LoraSpec(path=text)
    try:
        values = [float(v) for v in weights.split(",")]
    except ValueError:
        return LoraSpec(path=text)  # '=' belonged to the file name
    if len(values) not in (1, 2) or not path:
        raise SampleError(f"--lora {text!r}: expected PATH, PATH=WEIGHT or PATH=WEIGHT_HIGH,WEIGHT_LOW")
    return LoraSpec(path=path, weight=values[0], weight_2=values[1] if len(values) == 2 else None)


def _adapters_on(expert) -> list[str]:
    return list(getattr(expert, "peft_config", {}) or {})


def apply_loras(model: WanModel, specs: list[LoraSpec]) -> list[LoadedLora]:
    """Attach each LoRA as its own adapter and set its per-expert weight; adapters already there keep weight 1."""
    loaded: list[LoadedLora] = []
    taken = {name for expert in model.experts() for name in _adapters_on(expert)}
    for spec in specs:
        adapter = next(f"sample_lora_{i}" for i in range(len(taken) + 1) if f"sample_lora_{i}" not in taken)
        taken.add(adapter)
        files = resolve_lora_files(spec, model.variant.has_transformer_2)
        for expert_name, path in files.items():
            expert = getattr(model, expert_name)
            check_lora_fits(  # header only: another model's LoRA or a broken file is refused before loading
                path,
                model.variant.name,
                linear_shapes(expert),
                allow_other_model=spec.allow_other_model,
                override="--allow-other-model-lora",
            )
            try:
                if is_variant_file(path):  # LoHa / LoKr (formats/lycoris_keys.py)
                    tensors, metadata = read_tensors(path)
                    rank, alpha = file_rank_and_alpha(tensors, metadata)
                    kind, state_dict = from_comfyui_variant_state_dict(tensors, rank, alpha)
                    modules = sorted({key.rsplit(".", 1)[0] for key in state_dict})
                else:
                    state_dict, metadata = load_lora_file(path)
                    modules = sorted({key.rsplit(".lora_", 1)[0] for key in state_dict if ".lora_" in key})
                    kind, rank, alpha = "lora", int(metadata[RANK_KEY]), float(metadata[ALPHA_KEY])
                attach_lora(
                    expert,
                    rank=rank,
                    alpha=alpha,
                    target_modules=modules,
                    adapter_name=adapter,
                    kind=kind,
                    use_dora=any(key.endswith(DORA_SUFFIX) for key in state_dict),
                )
                set_lora_state_dict(expert, state_dict, adapter_name=adapter)
            except (KeyError, ValueError, RuntimeError) as error:
                raise SampleError(f"LoRA {path} does not fit the {model.variant.name} {expert_name}: {error}") from None
        loaded.append(LoadedLora(adapter, spec, files, {e: spec.weight_for(e) for e in files}))
    _set_weights(model, loaded)
    return loaded


def remove_loras(model: WanModel, loaded: list[LoadedLora]) -> None:
    """Delete the sampling adapters again (e.g. before training goes on); other adapters stay active."""
    for expert in model.experts():
        names = [lora.adapter for lora in loaded if lora.adapter in _adapters_on(expert)]
        if names:
            for name in names:
                remove_dora(expert, name)  # DoRA's hooks and magnitudes (none on a plain LoRA)
            expert.delete_adapters(names)
    _set_weights(model, [])


def _set_weights(model: WanModel, loaded: list[LoadedLora]) -> None:
    for expert_name in (HIGH, LOW):
        expert = getattr(model, expert_name)
        if expert is None or not _adapters_on(expert):
            continue
        weights = {name: 1.0 for name in _adapters_on(expert)}
        weights.update({lora.adapter: lora.weights[expert_name] for lora in loaded if expert_name in lora.weights})
        expert.set_adapters(list(weights), list(weights.values()))


def check_embeddings(paths: list[str]) -> list[str]:
    """Embedding files given for sampling exist (checked before the model is touched)."""
    paths = [str(p) for p in paths or []]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise SampleError(
            f"embeddings: not found: {', '.join(missing)}. Fix: give existing .safetensors embedding files"
        )
    return paths


def _embedding_loader():
    """modules.wan.embeddings.vectors (UMT5 textual inversion), or a clear error where this install lacks it."""
    try:
        from modules.wan.embeddings import vectors as embedding_loader
    except ImportError:
        raise SampleError(
            "embeddings: this install has no embedding loader (modules/wan/embeddings/vectors.py). "
            "Fix: sample without embeddings, or update the trainer"
        ) from None
    return embedding_loader


def load_embeddings(model: WanModel, paths: list[str]) -> list[dict]:
    """Load each embedding into the model's tokenizer and text encoder; returns what the sidecar records."""
    if not paths:
        return []
    loader = _embedding_loader()
    records = []
    for path in check_embeddings(paths):
        try:
            loaded = loader.load_embedding(model, path)
        except ValueError as error:  # EmbeddingError: the message names the file and the fix
            raise SampleError(f"embeddings: {error}") from None
        records.append({"path": path, "placeholder": loaded.placeholder, "vectors": len(loaded.token_ids)})
    return records


def prompt_with_embeddings(model: WanModel, prompt: str) -> str:
    """A multi-vector placeholder written as all its tokens, as the embedding loader defines (no-op without any)."""
    if not prompt or not vars(model).get("embeddings"):  # where the embedding loader keeps what it loaded
        return prompt
    return _embedding_loader().expand_prompt(model, prompt)
