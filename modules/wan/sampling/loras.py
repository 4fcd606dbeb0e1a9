"""LoRAs (a weight per LoRA and per expert) and embeddings for sampling a base model.

LoRA files (LoRA, DoRA, LoHa, LoKr) are read with formats/adapter_file.read_adapter_file, which gives the
settings recorded in the file (or inferred from older ones), and attached as named peft adapters, the same
layers diffusers' loader would create; each expert gets its own weight through diffusers' `set_adapters`.
An A14B LoRA saved by this trainer is a pair of files `<stem>_high_noise.safetensors` /
`<stem>_low_noise.safetensors`; giving `<stem>.safetensors` finds both (formats/lora_pairs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modules.module.dora import remove_dora
from modules.module.lora import attach_lora, set_lora_state_dict
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.lora_compatibility import check_lora_fits, linear_shapes
from modules.wan.formats.lora_file import DORA_SUFFIX, EXPERT_FILE_SUFFIX

# Re-exported: the sampler's callers name LoRAs with these (formats/lora_pairs.py is their one home).
from modules.wan.formats.lora_pairs import (  # noqa: F401
    HIGH,
    LORA_EXPERT_CHOICES,
    LOW,
    LoraSpec,
    parse_lora_argument,
    resolve_lora_files,
)
from modules.wan.model import WanModel
from modules.wan.sampling.settings import SampleError


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


def _module_of(key: str) -> str:
    """`blocks.0.attn1.to_q.lora_A.weight` / `...hada_w1_a` / `...dora_scale` -> `blocks.0.attn1.to_q`."""
    key = key.removesuffix(".weight")
    return key[: -len(DORA_SUFFIX)] if key.endswith(DORA_SUFFIX) else key.rsplit(".", 1)[0]


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
                # The settings recorded in the file (factor, DoRA, ...), else inferred from it (older files).
                settings, state_dict, _ = read_adapter_file(path)
                modules = sorted({_module_of(key) for key in state_dict})
                attach_lora(expert, target_modules=modules, adapter_name=adapter, **settings.attach_arguments())
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
