"""The hyper-parameters that rebuild a trained adapter, recorded in its file: one metadata entry, `wan.adapter`.

A peft adapter can only take a file's tensors when it is attached with the settings it was trained with: the
type (lora / loha / lokr), rank, alpha, DoRA, and for LoKr the decompose factor and whether the first factor
is decomposed too (they decide the factors' shapes). The savers write all of them as one JSON entry
(`ADAPTER_KEY`); the sampler, `lora.continue_from` and scripts/convert_model.py read it back
(formats/adapter_file.py). A file without it (written before this entry existed, or by another tool) gets the
settings inferred from its tensors: the type from the key names, rank and alpha from the shapes and `.alpha`
keys (or ss_network_dim / ss_network_alpha), LoKr's factor from the factor shapes. See docs/lora_format.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import torch
from peft.tuners.lokr.layer import factorization

from modules.wan.formats.lycoris_keys import VariantFileError, file_rank_and_alpha, variant_of_keys

ADAPTER_KEY = "wan.adapter"
ADAPTER_FORMAT = 1  # bumped if the entry's meaning changes; readers refuse a newer one by name
_DORA_SUFFIX = ".dora_scale"


@dataclass(frozen=True)
class AdapterSettings:
    type: str  # lora, loha, lokr
    rank: int
    alpha: float
    use_dora: bool = False
    factor: int = -1  # lokr: peft's decompose_factor (-1: as square as the layer allows)
    decompose_both: bool = False  # lokr: the first factor is a product of two matrices as well
    recorded: bool = True  # False: inferred from the tensors of a file without the entry (not written)

    def metadata(self) -> dict[str, str]:
        values = {k: v for k, v in asdict(self).items() if k != "recorded"}
        return {ADAPTER_KEY: json.dumps({"format": ADAPTER_FORMAT, **values}, sort_keys=True)}

    def attach_arguments(self) -> dict:
        """Keyword arguments of modules/module/lora.attach_lora that rebuild this adapter."""
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "kind": self.type,
            "factor": self.factor,
            "decompose_both": self.decompose_both,
            "use_dora": self.use_dora,
        }


def settings_for_saving(
    state_dict: dict[str, torch.Tensor], kind: str, rank: int, alpha: float, factor: int = -1
) -> AdapterSettings:
    """What a saver records for an adapter's peft state dict (DoRA and LoKr's decompose_both from its tensors)."""
    return AdapterSettings(
        type=kind,
        rank=int(rank),
        alpha=float(alpha),
        use_dora=any(key.endswith(_DORA_SUFFIX) for key in state_dict),
        factor=int(factor) if kind == "lokr" else -1,
        decompose_both=kind == "lokr" and any(key.endswith(".lokr_w1_a") for key in state_dict),
    )


def recorded_settings(metadata: dict[str, str], source: str) -> AdapterSettings | None:
    """The `wan.adapter` entry of a file's metadata, or None when the file has none."""
    text = metadata.get(ADAPTER_KEY)
    if not text:
        return None
    try:
        values = json.loads(text)
        version = values.pop("format")
        if version > ADAPTER_FORMAT:
            raise VariantFileError(
                f"{source}: its {ADAPTER_KEY} entry is format {version}, this trainer reads up to {ADAPTER_FORMAT}. "
                "Fix: update the trainer"
            )
        known = {f.name for f in fields(AdapterSettings)} - {"recorded"}
        return AdapterSettings(**{k: v for k, v in values.items() if k in known})  # extra keys: informational
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise VariantFileError(
            f"{source}: its {ADAPTER_KEY} metadata is not readable ({error}). Fix: remove the entry to have the "
            "settings inferred from the tensors, or re-save the file with this trainer"
        ) from None


def inferred_settings(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> AdapterSettings:
    """Settings of a file without `wan.adapter`, from its ComfyUI-layout tensors (LoHa/LoKr) or, for plain LoRA,
    the rank and alpha that formats/lora_file.load_lora_file put into `metadata` from the weights."""
    kind = variant_of_keys(tensors)
    if kind is None:
        return AdapterSettings(
            type="lora",
            rank=int(metadata["ss_network_dim"]),
            alpha=float(metadata["ss_network_alpha"]),
            use_dora=any(key.endswith(_DORA_SUFFIX) for key in tensors),
            recorded=False,
        )
    rank, alpha = file_rank_and_alpha(tensors, metadata)
    if kind == "loha":
        return AdapterSettings(type="loha", rank=rank, alpha=alpha, recorded=False)
    return AdapterSettings(
        type="lokr",
        rank=rank,
        alpha=alpha,
        factor=inferred_lokr_factor(tensors),
        decompose_both=any(key.endswith(".lokr_w1_a") for key in tensors),
        recorded=False,
    )


def _factor_shape(parts: dict[str, torch.Tensor], name: str) -> tuple[int, int]:
    if name in parts:
        return tuple(parts[name].shape[:2])
    return parts[f"{name}_a"].shape[0], parts[f"{name}_b"].shape[1]


def inferred_lokr_factor(tensors: dict[str, torch.Tensor]) -> int:
    """peft's decompose_factor that gives every module's LoKr factors their shapes.

    A layer (out, in) is split as out = a * c, in = b * d with w1 (a, b) and w2 (c, d), each pair from peft's
    `factorization(dim, factor)`. One module can fit several factors (a 32-wide layer splits the same way for
    -1 and 4), so the factor must fit all of them: -1 (the default) is tried first, then the factor sizes
    themselves (a factor that divides a size is that size), then every other factor up to the layer size."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, _, part = key.rpartition(".")
        if part.startswith("lokr_w"):
            modules.setdefault(module, {})[part] = value
    if not modules:
        raise VariantFileError("no LoKr tensors to infer the factor from")
    shapes = {(_factor_shape(parts, "lokr_w1"), _factor_shape(parts, "lokr_w2")) for parts in modules.values()}
    sizes = sorted({size for pair in shapes for shape in pair for size in shape})
    largest = max(max(a * c, b * d) for (a, b), (c, d) in shapes)
    for factor in dict.fromkeys([-1, *sizes, *range(1, largest + 1)]):
        if all(
            factorization(a * c, factor) == (a, c) and factorization(b * d, factor) == (b, d)
            for (a, b), (c, d) in shapes
        ):
            return factor
    (a, b), (c, d) = sorted(shapes)[0]
    raise VariantFileError(
        f"LoKr factors of shapes {(a, b)} and {(c, d)} (and others) come from no decompose factor peft uses. "
        f"Fix: re-save the file with this trainer, or give its factor in the {ADAPTER_KEY} metadata"
    )


def adapter_settings(tensors: dict[str, torch.Tensor], metadata: dict[str, str], source: str) -> AdapterSettings:
    """Recorded settings when the file has them, else inferred from its tensors (older files)."""
    return recorded_settings(metadata, source) or inferred_settings(tensors, metadata)
