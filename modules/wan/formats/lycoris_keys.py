"""LoHa and LoKr files in the layout ComfyUI loads (its comfy/weight_adapter/loha.py and lokr.py key names).

Keys are `diffusion_model.<original WAN module>.<tensor>` plus a per-module `.alpha`, as for plain LoRA
(docs/lora_format.md):
  LoHa: hada_w1_a (out, r), hada_w1_b (r, in), hada_w2_a (out, r), hada_w2_b (r, in);
        ComfyUI adds (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / r, r = hada_w1_b.shape[0] - peft's formula.
  LoKr: lokr_w1 or lokr_w1_a/_b, and lokr_w2 or lokr_w2_a/_b; ComfyUI adds kron(w1, w2) * alpha / r with
        r = the inner size of a decomposed factor, and scale 1 when neither factor is decomposed. peft always
        scales by alpha / rank, so for a module whose factors are both full matrices the scale is folded into
        lokr_w1 on saving (and its alpha written as the rank), and taken back out on loading.
The tensors themselves are peft's, unchanged in orientation: peft's LoHa/LoKr follow LyCORIS, as ComfyUI does.
diffusers' LoRA loader reads neither type (it knows lora_A/lora_B and lora_down/lora_up only).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import safe_open

from modules.util.errors import UserError
from modules.wan.formats.key_map import ORIGINAL_PREFIXES, diffusers_to_original_key, original_to_diffusers_key
from modules.wan.formats.kohya_keys import is_kohya_layout, kohya_to_comfyui

COMFYUI_PREFIX = "diffusion_model."
VARIANT_TENSORS: dict[str, tuple[str, ...]] = {
    "loha": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"),
    "lokr": ("lokr_w1", "lokr_w2", "lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b"),
}
_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>hada_w[12]_[ab]|lokr_w[12](?:_[ab])?)$")


class VariantFileError(UserError, ValueError):
    pass


def variant_of_keys(keys) -> str | None:
    """'loha' / 'lokr' when the keys hold that adapter's tensors, else None (plain LoRA or anything else)."""
    parts = {match["part"] for key in keys if (match := _KEY.match(key))}
    if not parts:
        return None
    kinds = {kind for kind, names in VARIANT_TENSORS.items() if parts & set(names)}
    if len(kinds) != 1:
        raise VariantFileError(f"the file mixes LoHa and LoKr tensors ({sorted(parts)}); one file holds one type")
    return kinds.pop()


def _modules(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if not match:
            raise VariantFileError(f"{key!r} is not a LoHa/LoKr tensor (<module>.hada_w1_a, <module>.lokr_w1, ...)")
        modules.setdefault(match["module"], {})[match["part"]] = value
    return modules


def _lokr_rank(parts: dict[str, torch.Tensor]) -> int | None:
    """The r ComfyUI divides alpha by: inner size of a decomposed factor (w2's wins, as in ComfyUI), else None."""
    if "lokr_w2_b" in parts:
        return parts["lokr_w2_b"].shape[0]
    if "lokr_w1_b" in parts:
        return parts["lokr_w1_b"].shape[0]
    return None


def to_comfyui_variant_state_dict(
    peft_state_dict: dict[str, torch.Tensor], kind: str, rank: int, alpha: float, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """peft names (`blocks.0.attn1.to_q.hada_w1_a`) -> ComfyUI names, with alphas that make ComfyUI's scale peft's."""
    out: dict[str, torch.Tensor] = {}
    for module, parts in _modules(peft_state_dict).items():
        missing = sorted(set(VARIANT_TENSORS["loha"]) - set(parts)) if kind == "loha" else []
        if missing:
            raise VariantFileError(f"LoHa module {module} lacks {missing}")
        name = COMFYUI_PREFIX + diffusers_to_original_key(module)
        module_alpha = float(alpha)
        tensors = {part: value.detach().float() for part, value in parts.items()}
        if kind == "lokr" and _lokr_rank(tensors) is None:
            tensors["lokr_w1"] = tensors["lokr_w1"] * (alpha / rank)  # ComfyUI applies scale 1 here
            module_alpha = float(rank)
        for part, value in tensors.items():
            out[f"{name}.{part}"] = value.to("cpu", dtype)
        out[f"{name}.alpha"] = torch.tensor(module_alpha, dtype=torch.float32)
    return out


def from_comfyui_variant_state_dict(
    tensors: dict[str, torch.Tensor], rank: int, alpha: float
) -> tuple[str, dict[str, torch.Tensor]]:
    """ComfyUI names -> (kind, peft state dict in float32) for an adapter attached with this rank and alpha.

    Raises when a module's alpha is not what this adapter applies (peft holds one alpha per adapter).
    """
    kind = variant_of_keys(tensors)
    if kind is None:
        raise VariantFileError("no LoHa or LoKr tensors in the file")
    alphas = {k[: -len(".alpha")]: float(v.item()) for k, v in tensors.items() if k.endswith(".alpha")}
    weights = {k: v for k, v in tensors.items() if not k.endswith(".alpha")}
    state_dict: dict[str, torch.Tensor] = {}
    for name, parts in _modules(weights).items():
        module = original_to_diffusers_key(name[len(COMFYUI_PREFIX) :] if name.startswith(COMFYUI_PREFIX) else name)
        parts = {part: value.float() for part, value in parts.items()}
        inner = _lokr_rank(parts) if kind == "lokr" else parts["hada_w1_b"].shape[0]
        file_alpha = alphas.get(name)
        if inner is None:
            # Both LoKr factors full: the file holds the scaled product (ComfyUI's scale 1); peft scales by
            # alpha / rank, so that factor comes back out of lokr_w1.
            if alpha:
                parts["lokr_w1"] = parts["lokr_w1"] * (rank / alpha)
        else:
            effective = (file_alpha if file_alpha is not None else inner) / inner
            if inner != rank or abs(effective - alpha / rank) > 1e-6 * max(1.0, abs(effective)):
                raise VariantFileError(
                    f"{name}: rank {inner} and alpha {file_alpha} differ from the adapter's rank {rank} / alpha {alpha}"
                )
        for part, value in parts.items():
            state_dict[f"{module}.{part}"] = value
    return kind, state_dict


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LoHa/LoKr file's tensors under ComfyUI names (a kohya-layout file is renamed) and its metadata."""
    with safe_open(str(path), framework="pt") as file:
        tensors, metadata = {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata() or {})
    if is_kohya_layout(tensors):
        try:
            tensors = kohya_to_comfyui(tensors)
        except KeyError as error:
            raise VariantFileError(f"{path}: {error.args[0]}. Fix: use a LoRA trained for WAN 2.2") from None
    return tensors, metadata


def is_variant_file(path: str | Path) -> bool:
    with safe_open(str(path), framework="pt") as file:
        return variant_of_keys(file.keys()) is not None


def file_rank_and_alpha(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[int, float]:
    """The rank and alpha to attach the file's adapter with: the training settings our saver records
    (ss_network_dim / ss_network_alpha), else what the tensors say (LoKr with full factors needs the former)."""
    if "ss_network_dim" in metadata and "ss_network_alpha" in metadata:
        return int(metadata["ss_network_dim"]), float(metadata["ss_network_alpha"])
    for key, value in tensors.items():
        if key.endswith((".hada_w1_b", ".lokr_w2_b", ".lokr_w1_b")):
            rank = value.shape[0]
            alpha_key = key.rsplit(".", 1)[0] + ".alpha"
            return rank, float(tensors[alpha_key].item()) if alpha_key in tensors else float(rank)
    raise VariantFileError(
        "a LoKr file whose factors are all full matrices needs its rank and alpha in the metadata "
        "(ss_network_dim, ss_network_alpha); this file has neither"
    )


def is_original_layout(keys) -> bool:
    return all(k.startswith(ORIGINAL_PREFIXES) for k in keys)
