"""Storage choices for what the loader reads: bitsandbytes int8/nf4 expert linears and fp8 UMT5 linears.

The loader reads these parts in a 16/32-bit dtype (`load_dtypes`); int8/nf4 expert linears are quantised one by one
as they are read (`quantiser_for`, like fp8 storage in the loader itself), and `apply_storage` converts what is
left layer by layer (an fp8 UMT5, or experts whose base LoRAs had to be merged in 16 bits first). Both happen
before any caching, so a changed text encoder storage is part of the caption cache key (`text_encoder_identity`)
and never reuses bf16 captions.
"""

from __future__ import annotations

import re

from torch import nn

from modules.config.memory_config import QUANTISED_DTYPES
from modules.config.validation import ConfigError
from modules.module.bnb_linear import (
    BitsAndBytesUnavailable,
    check_quantised_backend,
    convert_to_quantised_storage,
    quantised_linear,
)
from modules.module.fp8_linear import Fp8Linear, quantise_fp8
from modules.util.device import DTYPES, resolve_device
from modules.util.heap import trim_heap

FP8 = "float8_e4m3fn"
# UMT5's feed-forward output `wo` stays 16-bit: transformers casts the hidden state to wo's dtype before it (and
# keeps wo in float32 upstream for precision), so an fp8 wo would cast activations to fp8.
_UMT5_FP8_LINEAR = re.compile(r"^encoder\.block\.\d+\..*\.(q|k|v|o|wi_0|wi_1)$")


def load_dtypes(config) -> tuple[str, str]:
    """(transformer, text encoder) dtype names the loader reads the weights in."""
    model = config.model
    transformer = (
        config.training.train_dtype if model.transformer_dtype in QUANTISED_DTYPES else model.transformer_dtype
    )
    text_encoder = "bfloat16" if model.text_encoder_dtype == FP8 else model.text_encoder_dtype
    return transformer, text_encoder


def check_storage_backend(config) -> None:
    """Before loading: int8/nf4 need a bitsandbytes that computes on the training device."""
    if config.model.transformer_dtype in QUANTISED_DTYPES:
        try:
            check_quantised_backend(
                config.model.transformer_dtype,
                resolve_device(config.training.device),
                DTYPES[config.training.train_dtype],
            )
        except BitsAndBytesUnavailable as error:
            raise ConfigError(str(error)) from None


def umt5_fp8_names(text_encoder: nn.Module) -> list[str]:
    return [
        name
        for name, module in text_encoder.named_modules()
        if isinstance(module, nn.Linear) and not isinstance(module, Fp8Linear) and _UMT5_FP8_LINEAR.match(name)
    ]


def convert_text_encoder_to_fp8(text_encoder: nn.Module) -> list[str]:
    names = umt5_fp8_names(text_encoder)
    for name in names:
        linear = text_encoder.get_submodule(name)
        fp8, scale = quantise_fp8(linear.weight.detach())
        text_encoder.set_submodule(name, Fp8Linear.from_linear(linear, fp8, scale))
    return names


def quantiser_for(config):
    """int8/nf4: a function from one block linear, read in the training dtype, to its bitsandbytes layer, which
    the loader calls as soon as that linear's tensors are read (part_load.py), so loading holds the quantised
    expert plus one 16-bit layer, never a whole expert in the training dtype (None for other storage)."""
    storage = config.model.transformer_dtype
    if storage not in QUANTISED_DTYPES:
        return None
    compute = DTYPES[config.training.train_dtype]

    def quantise(linear):
        quantised = quantised_linear(linear, storage, compute)
        trim_heap()  # the quantiser's freed temporaries would otherwise stay in the heap, block after block
        return quantised

    return quantise


def apply_storage(model, config, experts_done: bool = False) -> None:
    """`experts_done`: the loader already quantised each expert (quantiser_for)."""
    storage = config.training.train_dtype if experts_done else config.model.transformer_dtype
    compute = DTYPES[config.training.train_dtype] if storage in QUANTISED_DTYPES else None
    apply_storage_choices(model, storage, config.model.text_encoder_dtype, compute)


def apply_storage_choices(model, transformer_storage: str, text_encoder_storage: str, compute_dtype) -> None:
    """int8/nf4 experts and/or an fp8 UMT5 (other values: nothing to do); also used by scripts/sample.py."""
    if transformer_storage in QUANTISED_DTYPES:
        for expert in model.experts():
            convert_to_quantised_storage(expert, transformer_storage, compute_dtype)
    if text_encoder_storage == FP8:  # on every load of UMT5 (it is read on first use: modules/wan/encoder_parts.py)
        model.after_encoder_load("text_encoder", "fp8 linears", convert_text_encoder_to_fp8)
        model.text_encoder_identity = f"{model.text_encoder_identity}:linears=float8_e4m3fn"
