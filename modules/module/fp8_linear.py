"""fp8 weight storage for frozen linears: one byte per weight in memory, the matmul in the training dtype.

`Fp8Linear` is an `nn.Linear` whose weight is float8_e4m3fn with a float32 `scale_weight` beside it (one value,
or one per output row), the form of ComfyUI's `*_fp8_scaled` files. Its forward computes
`F.linear(x, weight.to(dtype) * scale_weight.to(dtype), bias)` in the compute dtype (autocast's, else x's), so
only the layer being computed has an upcast weight. A custom autograd function keeps it that way in the backward
pass: it saves the fp8 weight (already resident) instead of the upcast copy, and upcasts again for grad_input,
so an un-checkpointed model does not keep every layer's 16-bit weight alive until backward.

Which layers: every `nn.Linear` inside the transformer blocks (self- and cross-attention q/k/v/out, the
feed-forward pair), which is the set LoRA targets by default and what musubi-tuner and ComfyUI's fp8 WAN files
store in fp8; norms, modulation (`scale_shift_table`), embedders and the head keep their dtype.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
_BLOCK_PREFIX = re.compile(r"^blocks\.\d+\.")


_CHUNK_ELEMENTS = 1 << 16  # float32 working memory of the quantiser: 256 KiB, whatever the matrix


def quantise_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp8(weight / scale) with a float32 per-tensor scale = absmax / 448, computed on this one tensor only.

    The division runs in float32 on row chunks in one small work buffer: float32 copies of whole matrices (or fresh
    chunk temporaries), allocated and freed per tensor while a model loads, fragment the heap (a bf16 file loaded
    into fp8 storage measured 1.8 to 2.9x the model's size that way)."""
    low, high = torch.aminmax(weight)  # absmax without an abs() copy of the matrix
    scale = (torch.maximum(high, -low).float() / FP8_MAX).clamp(min=1e-12).reshape(())
    out = torch.empty(weight.shape, dtype=FP8_DTYPE, device=weight.device)
    rows = weight.reshape(-1, weight.shape[-1]) if weight.dim() else weight.reshape(1, 1)
    flat_out = out.view(rows.shape)
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    work = torch.empty((min(step, rows.shape[0]), rows.shape[1]), dtype=torch.float32, device=weight.device)
    for start in range(0, rows.shape[0], step):
        chunk = work[: len(rows[start : start + step])]
        # copy_ casts (float32 -> fp8 rounds as .to does): no temporary besides `work`, the same size every call.
        flat_out[start : start + step].copy_(chunk.copy_(rows[start : start + step]).div_(scale))
    return out, scale


class _Fp8Matmul(torch.autograd.Function):
    """x @ (weight * scale)^T + bias, saving the fp8 weight (not its upcast copy) for the backward pass."""

    @staticmethod
    def forward(ctx, x, weight, scale, bias):
        ctx.save_for_backward(weight, scale)
        return F.linear(x, dequantise(weight, scale, x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_output):
        weight, scale = ctx.saved_tensors
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output @ dequantise(weight, scale, grad_output.dtype)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0)
        return grad_x, None, None, grad_bias


def dequantise(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return weight.to(dtype) * scale.to(dtype)


class Fp8Linear(nn.Linear):
    """A frozen linear stored in fp8 with `scale_weight`; peft wraps it like any nn.Linear (it calls base_layer(x))."""

    # peft takes a base layer's `compute_dtype` (as for bitsandbytes layers) as the dtype of new adapters; without it
    # a new LoRA would be cast to the weight's fp8 and its random init rounded coarsely before lora.py makes it float32.
    compute_dtype = torch.float32

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight: torch.Tensor, scale: torch.Tensor) -> Fp8Linear:
        """`linear` with `weight` (fp8) and `scale` in place of its weight; its bias (same Parameter) is kept."""
        with torch.device("meta"):  # no memory for a weight that is replaced at once
            layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.weight = nn.Parameter(weight, requires_grad=False)
        layer.bias = linear.bias
        layer.register_buffer("scale_weight", scale.to(torch.float32))
        layer.train(linear.training)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        return _Fp8Matmul.apply(x.to(dtype), self.weight, self.scale_weight, self.bias)

    def dequantised_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight this layer computes with in `dtype`."""
        return dequantise(self.weight, self.scale_weight, dtype)


def fp8_storage_names(transformer: nn.Module) -> list[str]:
    """The linears of the transformer blocks (plain or already fp8), in module order."""
    return [
        name
        for name, module in transformer.named_modules()
        if _BLOCK_PREFIX.match(name) and isinstance(module, nn.Linear)
    ]


def convert_to_fp8_storage(transformer: nn.Module, scales: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Replace every block linear by an Fp8Linear, one layer at a time (never a copy of the whole model).

    A 16/32-bit weight is quantised (scale = absmax / 448); a weight that is fp8 already keeps its bytes, with its
    scale from `scales` (module name -> the file's scale_weight) or 1. Returns the converted module names.
    """
    scales = scales or {}
    names = []
    for name in fp8_storage_names(transformer):
        linear = transformer.get_submodule(name)
        if isinstance(linear, Fp8Linear):
            continue
        weight = linear.weight.detach()
        if weight.dtype == FP8_DTYPE:
            fp8, scale = weight, scales.get(name, torch.ones((), dtype=torch.float32))
        else:
            fp8, scale = quantise_fp8(weight)
        transformer.set_submodule(name, Fp8Linear.from_linear(linear, fp8, scale))
        names.append(name)
    return names
