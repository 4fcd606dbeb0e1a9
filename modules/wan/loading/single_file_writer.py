"""Write a loaded part in the single-file layouts users hold (for tests and benchmarks; nothing can be downloaded).

Layouts: the original Wan / ComfyUI names (with or without `model.diffusion_model.`), diffusers names, Wan-AI's
.pth files (torch.save of a tensor dict), in fp32 / bf16 / fp16, fp8_e4m3fn, and ComfyUI's fp8 "scaled" form:
every large matrix stored as fp8 of weight / scale with `<name>.scale_weight` (float32) next to it and a
`scaled_fp8` marker tensor (2 elements in diffusion models, 0 in text encoders, which also carry scale_input).
Also: header-only files with given names, dtypes and shapes and a sparse data region, for detection tests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.module.fp8_linear import quantise_fp8
from modules.util.atomic import atomic_path
from modules.wan.formats.headers import SAFETENSORS_DTYPES
from modules.wan.loading.file_detection import SingleFileInfo
from modules.wan.loading.part_load import file_key_function

_CODES = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}


def single_file_state_dict(
    module: torch.nn.Module,
    part: str,
    *,
    naming: str,
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    fp8_scaled: bool = False,
    config: dict | None = None,
) -> dict[str, torch.Tensor]:
    """The module's weights under the layout's names (tied weights once), cast or fp8-quantised as asked."""
    info = SingleFileInfo(path=Path("."), part=part, naming=naming, prefix=prefix, dtype=str(dtype))
    if config is None:  # diffusers configs are dicts; transformers configs have to_dict()
        config = module.config.to_dict() if hasattr(module.config, "to_dict") else dict(module.config)
    to_file = file_key_function(info, config)
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, param in module.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        key, value = to_file(name), param.detach()
        if (
            (fp8_scaled or dtype == torch.float8_e4m3fn)
            and value.dim() == 2
            and name.endswith("weight")
            and "embed" not in name
            and "shared" not in name
        ):
            if fp8_scaled:
                value, scale = quantise_fp8(value)  # ComfyUI's form: scale = absmax / 448
                out[key[: -len("weight")] + "scale_weight"] = scale
                if part == "text_encoder":
                    out[key[: -len("weight")] + "scale_input"] = torch.ones(())
            else:
                value = value.to(torch.float8_e4m3fn)
        elif dtype != torch.float8_e4m3fn:
            value = value.to(dtype)
        else:
            value = value.to(torch.bfloat16)  # ComfyUI fp8 files keep norms, biases and embeddings in 16 bits
        out[key] = value.contiguous()
    if fp8_scaled:
        out["scaled_fp8"] = torch.empty(0 if part == "text_encoder" else 2, dtype=torch.float8_e4m3fn)
    return out


def write_single_file(path: str | Path, module: torch.nn.Module, part: str, **layout) -> Path:
    """Write `module` as one file; .pth is written with torch.save (Wan-AI's VAE and T5 files), else safetensors."""
    path = Path(path)
    state = single_file_state_dict(module, part, **layout)
    with atomic_path(path) as tmp:
        if path.suffix == ".pth":
            torch.save(state, tmp)
        else:
            save_file(state, str(tmp), metadata={"format": "pt"})
    return path


def _header_bytes(tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> tuple[bytes, int]:
    """The 8-byte length, the JSON header (padded to 8 bytes as the format does) and the data region's size."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": _CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, offset


def write_header_only(path: str | Path, tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> Path:
    """A safetensors file with a real header and a sparse (all-zero, unallocated) data region of the full size."""
    head, data_size = _header_bytes(tensors)
    path = Path(path)
    with path.open("wb") as f:
        f.write(head)
        f.truncate(len(head) + data_size)  # no data written: the file system stores a hole
    return path


def write_streamed(
    path: str | Path,
    tensors: dict[str, tuple[torch.dtype, tuple[int, ...]]],
    make: Callable[[str, torch.dtype, tuple[int, ...]], torch.Tensor],
) -> Path:
    """A safetensors file whose tensors `make(name, dtype, shape)` produces one at a time (for large test files:
    memory holds one tensor, never the model). Written atomically."""
    head, _ = _header_bytes(tensors)
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(head)
        for name, (dtype, shape) in tensors.items():
            tensor = make(name, dtype, shape).to(dtype).contiguous()
            f.write(tensor.view(-1).view(torch.uint8).numpy())  # the bytes as they are, no extra copy
    return path
