"""Quantised frozen linears through bitsandbytes: int8 (`Linear8bitLt`) and nf4 (`Linear4bit`) block linears.

Like fp8 storage (fp8_linear.py), this replaces the block linears of a loaded transformer one layer at a time, so
the same module tree runs on the CPU in tests and on a GPU; diffusers' `BitsAndBytesConfig` path is not used,
because it refuses to load without a GPU. peft recognises both layer types and wraps them with its own bitsandbytes
LoRA layers, whose adapter weights and file keys are those of a plain linear: a LoRA trained here loads into a
bf16 model unchanged.

int8 is LLM.int8's vector-wise absmax quantisation with no outlier threshold (every column in int8: 1 byte per
weight plus one float per row); nf4 is 4-bit NormalFloat with a block-wise absmax scale (0.5 byte per weight).
The weights cannot train; the bias keeps its dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from modules.module.fp8_linear import fp8_storage_names
from modules.util.errors import UserError

KINDS = ("int8", "nf4")


class BitsAndBytesUnavailable(UserError, RuntimeError):
    """bitsandbytes is missing or cannot compute on this device; the message says which and what to do."""


def import_bitsandbytes():
    try:
        import bitsandbytes
    except Exception as error:  # ImportError, or a library that fails while finding its native backend
        raise BitsAndBytesUnavailable(
            f"int8/nf4 storage needs bitsandbytes (pinned in requirements-*.txt), which cannot be imported here "
            f"({type(error).__name__}: {error}). Fix: `pip install bitsandbytes==0.50.2`, or set "
            "model.transformer_dtype to float8_e4m3fn or bfloat16."
        ) from None
    return bitsandbytes


def quantised_linear(linear: nn.Linear, kind: str, compute_dtype: torch.dtype) -> nn.Linear:
    """`linear` as a frozen bitsandbytes layer of `kind`, quantised where its weight is (the CPU while loading)."""
    bnb = import_bitsandbytes()
    device = linear.weight.device
    weight = linear.weight.detach()
    if kind == "int8":
        layer = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=False, has_fp16_weights=False, threshold=0.0, device="meta"
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    elif kind == "nf4":
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=False,
            compute_dtype=compute_dtype,
            quant_type="nf4",
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
        # bitsandbytes' CPU inference path repacks the weight in place for AVX512-BF16 on the first no-grad eval
        # call; it fails for layers narrower than its 64-value block and would switch layouts between sampling and
        # training. Sampling and training share the one (training) layout instead.
        layer.support_avx512bf16_for_cpu = False
    else:
        raise ValueError(f"quantised storage {kind!r}: choose one of {', '.join(KINDS)}")
    layer.weight = layer.weight.to(device)  # bitsandbytes quantises on the first move to a real device
    layer.bias = linear.bias
    if layer.bias is not None:
        layer.bias.requires_grad_(False)
    layer.train(linear.training)
    return layer


def convert_to_quantised_storage(transformer: nn.Module, kind: str, compute_dtype: torch.dtype) -> list[str]:
    """Replace every block linear (the set fp8 storage converts) by a bitsandbytes layer; returns their names."""
    names = fp8_storage_names(transformer)
    for name in names:
        transformer.set_submodule(name, quantised_linear(transformer.get_submodule(name), kind, compute_dtype))
    return names


def check_quantised_backend(kind: str, device: torch.device, compute_dtype: torch.dtype) -> None:
    """A 64x64 layer of `kind` runs forward and backward on `device`, or the reason why not, before any loading."""
    try:
        layer = quantised_linear(nn.Linear(64, 64), kind, compute_dtype).to(device)
        x = torch.randn(2, 64, device=device, requires_grad=True)
        with torch.autocast(device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32):
            layer(x).float().sum().backward()
        if x.grad is None or not torch.isfinite(x.grad).all():
            raise RuntimeError("the backward pass gave no finite input gradient")
    except BitsAndBytesUnavailable:
        raise
    except Exception as error:
        raise BitsAndBytesUnavailable(
            f"model.transformer_dtype {kind}: bitsandbytes cannot run a {kind} layer on {device} "
            f"({type(error).__name__}: {error}). Fix: use model.transformer_dtype float8_e4m3fn (runs wherever "
            "torch does) or bfloat16, or a device bitsandbytes supports (CUDA, ROCm, or its CPU backend)."
        ) from None
