"""What a single weight file holds, from its names and shapes alone (the safetensors header; no tensor data).

Decided here: the part (transformer, VAE, text encoder), its naming (original Wan / ComfyUI vs. diffusers),
the WAN 2.2 variant of a transformer (patch_embedding in-channels: 16 T2V, 36 I2V, 48 TI2V-5B), the VAE kind
(z_dim 16: Wan2.1 VAE, 48: Wan2.2 VAE), the storage dtype, fp8 scaling, and the expert when the file name
says it (high_noise / low_noise). Structure only, never widths, so tiny test files detect like the real ones.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from modules.base.model_loader import ModelLoadError
from modules.wan.formats.key_map import ORIGINAL_PREFIXES
from modules.wan.loading.weight_file import WeightFile
from modules.wan.variants import VARIANTS, WanVariant, variant_for_in_channels

# Tensors that describe fp8 scaling or ship extras, not weights of the model.
SCALE_SUFFIXES = (".scale_weight", ".scale_input")
EXTRA_KEYS = ("scaled_fp8", "spiece_model")
_DTYPE_NAMES = {"F32": "fp32", "BF16": "bf16", "F16": "fp16", "F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2"}
_HIGH = re.compile(r"high[_\- ]?noise|(?:^|[_\-.])high(?:[_\-.]|$)", re.IGNORECASE)
_LOW = re.compile(r"low[_\- ]?noise|(?:^|[_\-.])low(?:[_\-.]|$)", re.IGNORECASE)
_WAN21_NAME = re.compile(r"wan[_\- ]?2[._]?1(?!\d)", re.IGNORECASE)
EXPERT_PARTS = {"high_noise": "transformer", "low_noise": "transformer_2"}
_WAN21_FIX = (
    f"WAN 2.2 is needed: use the WAN 2.2 files (wan2.2_t2v_high/low_noise_14B, wan2.2_i2v_high/low_noise_14B, "
    f"wan2.2_ti2v_5B) or {', '.join(v.real_repo_id for v in VARIANTS.values())}"
)


@dataclass
class SingleFileInfo:
    path: Path
    part: str  # "transformer", "vae" or "text_encoder"
    naming: str  # "original" (Wan/ComfyUI), "diffusers" (diffusers/transformers names) or "wan_t5" (Wan-AI's T5)
    prefix: str  # stripped from every key, e.g. "model.diffusion_model."
    dtype: str  # storage dtype of the weights: fp32, bf16, fp16, fp8_e4m3fn, fp8_e5m2
    fp8_scaled: bool = False
    variant: WanVariant | None = None  # transformers only
    z_dim: int | None = None  # VAEs only (16: Wan2.1 VAE, 48: Wan2.2 VAE)
    expert: str | None = None  # "high_noise" / "low_noise" when the file name says so
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)  # prefix stripped, weights only

    @property
    def vae_kind(self) -> str | None:
        return None if self.z_dim is None else ("Wan2.2 VAE" if self.z_dim == 48 else "Wan2.1 VAE")

    def describe(self) -> str:
        what = {
            "transformer": f"a {self.variant.name if self.variant else '?'} transformer",
            "vae": f"the {self.vae_kind} (z_dim {self.z_dim})",
            "text_encoder": "a UMT5 text encoder",
        }[self.part]
        return f"{what}, {self.dtype}{' scaled' if self.fp8_scaled else ''}, {self.naming} names"


def expert_from_name(path: Path) -> str | None:
    name = path.name
    high, low = bool(_HIGH.search(name)), bool(_LOW.search(name))
    return None if high == low else ("high_noise" if high else "low_noise")


def _strip(keys: list[str]) -> tuple[str, list[str]]:
    for prefix in ORIGINAL_PREFIXES + (
        "first_stage_model.",
        "vae.",
        "text_encoders.umt5xxl.transformer.",
        "text_encoder.",
    ):
        if keys and all(k.startswith(prefix) or k in EXTRA_KEYS for k in keys):
            return prefix, [k[len(prefix) :] if k.startswith(prefix) else k for k in keys]
    return "", keys


def _storage_dtype(file: WeightFile, names: list[str]) -> str:
    # The dtype of most matrices: fp8 files keep norms and biases in higher precision.
    counts = Counter(file.dtypes[n] for n in names if len(file.shapes[n]) >= 2) or Counter(
        file.dtypes[n] for n in names
    )
    code = counts.most_common(1)[0][0] if counts else "F32"
    return _DTYPE_NAMES.get(code, code)


def detect_single_file(path: str | Path, what: str = "model", file: WeightFile | None = None) -> SingleFileInfo:
    """Classify one file; WAN 2.1, VACE/Animate and foreign files are refused with the reason and the fix."""
    owned = file is None
    file = file or WeightFile(path, what)
    try:
        return _detect(file, what)
    finally:
        if owned:
            file.close()


def _fail(path: Path, problem: str, expected: str, fix: str) -> ModelLoadError:
    return ModelLoadError(f"{path}: {problem}. Expected: {expected}. Fix: {fix}.")


def _detect(file: WeightFile, what: str) -> SingleFileInfo:
    path = file.path
    raw = list(file.shapes)
    prefix, stripped = _strip(raw)
    shapes = {
        s: file.shapes[r] for r, s in zip(raw, stripped) if s not in EXTRA_KEYS and not s.endswith(SCALE_SUFFIXES)
    }
    names = [r for r, s in zip(raw, stripped) if s in shapes]
    fp8_scaled = "scaled_fp8" in raw or any(k.endswith(".scale_weight") for k in raw)
    common = dict(
        path=path,
        prefix=prefix,
        dtype=_storage_dtype(file, names),
        fp8_scaled=fp8_scaled,
        expert=expert_from_name(path),
        shapes=shapes,
    )
    if "patch_embedding.weight" in shapes:
        return _transformer(path, shapes, common)
    for naming, quant in (("original", "conv1.weight"), ("diffusers", "quant_conv.weight")):
        if quant in shapes and (
            "decoder.middle.0.residual.0.gamma" in shapes or "decoder.mid_block.resnets.0.norm1.gamma" in shapes
        ):
            return SingleFileInfo(part="vae", naming=naming, z_dim=shapes[quant][0] // 2, **common)
    if "encoder.block.0.layer.0.SelfAttention.q.weight" in shapes or "blocks.0.attn.q.weight" in shapes:
        return _text_encoder(path, shapes, common)
    foreign = next(
        (k for k in shapes if "text_model.encoder.layers" in k or k.startswith(("model.layers.", "layers."))), None
    )
    if foreign and what == "text_encoder":
        raise _fail(
            path,
            f"wrong text encoder: this is a CLIP / LLM text encoder, not UMT5 (found {foreign})",
            "umt5_xxl_fp16.safetensors, umt5_xxl_fp8_e4m3fn_scaled.safetensors or models_t5_umt5-xxl-enc-bf16.pth",
            "use the UMT5-XXL encoder WAN was trained with",
        )
    looks = f" (it looks like a CLIP / LLM text encoder: {foreign})" if foreign else ""
    sample = ", ".join(list(shapes)[:4]) or "no tensors"
    raise _fail(
        path,
        f"unsupported format: not a WAN 2.2 transformer, WAN VAE or UMT5 encoder{looks} (first names: {sample})",
        "a WAN 2.2 single file (ComfyUI or Wan-AI) or a diffusers folder",
        f"check that this is the file meant for the {what}",
    )


def _transformer(path: Path, shapes: dict[str, tuple[int, ...]], common: dict) -> SingleFileInfo:
    naming = "diffusers" if "proj_out.weight" in shapes else "original"
    dim, in_channels = shapes["patch_embedding.weight"][:2]
    found = f"patch_embedding {list(shapes['patch_embedding.weight'])}"
    if any(k.startswith(("vace_blocks.", "motion_encoder.", "face_adapter.")) for k in shapes):
        raise _fail(
            path,
            f"this is a WAN VACE / Animate transformer ({found}), which this trainer does not train",
            "a WAN 2.2 T2V, I2V or TI2V transformer",
            "use one of the files named in docs/model_loading.md",
        )
    if any(k.startswith(("img_emb.", "condition_embedder.image_embedder.")) for k in shapes):
        raise _fail(
            path,
            f"this is a WAN 2.1 image-to-video transformer (it has a CLIP image embedding, {found})",
            "a WAN 2.2 transformer (no image embedding)",
            _WAN21_FIX,
        )
    if _WAN21_NAME.search(path.name) or dim == 1536:
        why = "the file name says WAN 2.1" if _WAN21_NAME.search(path.name) else "dim 1536 is the WAN 2.1 1.3B model"
        raise _fail(path, f"this is a WAN 2.1 transformer ({why}; {found})", "a WAN 2.2 transformer", _WAN21_FIX)
    variant = variant_for_in_channels(in_channels)
    if variant is None:
        raise _fail(
            path,
            f"transformer in_channels {in_channels} fits no WAN 2.2 model ({found})",
            "16 (T2V-A14B), 36 (I2V-A14B) or 48 (TI2V-5B)",
            "use a WAN 2.2 transformer file",
        )
    if not variant.has_transformer_2 and common["expert"]:
        common = {**common, "expert": None}  # "high"/"low" in a 5B file name means nothing
    return SingleFileInfo(part="transformer", naming=naming, variant=variant, **common)


def _text_encoder(path: Path, shapes: dict[str, tuple[int, ...]], common: dict) -> SingleFileInfo:
    naming = "diffusers" if "encoder.block.0.layer.0.SelfAttention.q.weight" in shapes else "wan_t5"
    block = re.compile(r"^(?:encoder\.block|blocks)\.(\d+)\.")
    blocks = {int(m.group(1)) for k in shapes if (m := block.match(k))}
    with_bias = {
        int(m.group(1))
        for k in shapes
        if (m := block.match(k)) and ("relative_attention_bias" in k or "pos_embedding" in k)
    }
    # UMT5 gives every block its own relative position bias; T5 (Flux, SD3) only the first.
    if len(blocks) > 1 and with_bias != blocks:
        raise _fail(
            path,
            f"this text encoder is T5, not UMT5 (relative position bias in blocks {sorted(with_bias)} "
            f"of {len(blocks)})",
            "the UMT5-XXL encoder (umt5_xxl_fp16.safetensors or models_t5_umt5-xxl-enc-bf16.pth)",
            "t5xxl files of Flux/SD3 do not work with WAN; use umt5_xxl",
        )
    return SingleFileInfo(part="text_encoder", naming=naming, **common)
