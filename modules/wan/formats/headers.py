"""The safetensors header (the first 8 + N bytes of the file), parsed with json, and tensors read one at a time.

Detection needs only names, dtypes and shapes, so it never touches the data region: a 28 GB checkpoint is
recognised in milliseconds, and a sparse or header-only copy is recognised like the real file.
Tensors are read with plain file reads into a tensor of their own size, so a loader holds at most one tensor
beyond the model it is building, and the page cache never shows up in the process's memory. With `map_weights`, a
tensor read in the file's own dtype is instead a view of the file's private mapping (modules/module/mapped_weights.py:
shared through the page cache, never written back); conversions still go through the scratch buffer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.base.model_loader import ModelLoadError
from modules.module.mapped_weights import FileMapping

# safetensors dtype codes (the format's own names) -> torch dtypes.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
# A real header is a few hundred KB; anything this large is not a safetensors header.
_MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors code, e.g. "BF16"
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return SAFETENSORS_DTYPES[self.dtype]


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    file_size: int


def _broken(path: Path, found: str, what: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path}: the {what} file is not a usable safetensors file. Found: {found}. Expected: a complete .safetensors "
        f"file. Fix: re-download or re-copy {path.name} (an interrupted download or copy leaves a truncated file)."
    )


def read_header(path: str | Path, what: str = "weights") -> SafetensorsHeader:
    """Parse and check the header; reads 8 + N bytes, never the data. Truncated or corrupt files are refused."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _broken(path, f"{size} bytes, too short for a safetensors header", what)
            length = int.from_bytes(head, "little")
            if length > min(size - 8, _MAX_HEADER_BYTES):
                raise _broken(
                    path,
                    f"{size} bytes, but its first 8 bytes announce a {length}-byte header "
                    "(truncated, or not a safetensors file)",
                    what,
                )
            raw = json.loads(f.read(length))
    except OSError as error:
        raise ModelLoadError(
            f"{path}: cannot read the {what} file ({error}). Fix: check the path and its permissions."
        ) from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _broken(path, f"a header that is not JSON ({error})", what) from error
    if not isinstance(raw, dict):
        raise _broken(path, f"a header that is a JSON {type(raw).__name__}, not an object", what)
    data_start = 8 + length
    tensors: dict[str, TensorInfo] = {}
    for name, entry in raw.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError) as error:
            raise _broken(path, f"a malformed header entry for {name!r} ({error})", what) from error
        if dtype not in SAFETENSORS_DTYPES:
            raise ModelLoadError(
                f"{path}: tensor {name!r} has dtype {dtype}, which this trainer cannot load. "
                f"Expected one of {', '.join(SAFETENSORS_DTYPES)}. Fix: convert the file to bf16/fp16 safetensors."
            )
        if end - begin != math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize or begin < 0:
            raise _broken(path, f"tensor {name!r}: {end - begin} bytes for shape {list(shape)} {dtype}", what)
        tensors[name] = TensorInfo(dtype, shape, data_start + begin, data_start + end)
    needed = max((t.end for t in tensors.values()), default=data_start)
    if needed > size:
        raise _broken(path, f"{size} bytes, but its header describes {needed} bytes (truncated)", what)
    metadata = raw.get("__metadata__") or {}
    return SafetensorsHeader(path, tensors, metadata if isinstance(metadata, dict) else {}, size)


class ScratchBuffer:
    """One growing uint8 buffer that conversions read into: memory holds the largest tensor's bytes once, however
    many tensors (or shard files sharing it) go through it."""

    def __init__(self):
        self._buffer = torch.empty(0, dtype=torch.uint8)

    def bytes(self, size: int) -> torch.Tensor:
        if self._buffer.numel() < size:
            self._buffer = torch.empty(0, dtype=torch.uint8)  # the old one goes before the larger one comes
            self._buffer = torch.empty(size, dtype=torch.uint8)
        return self._buffer[:size]

    def release(self) -> None:
        self._buffer = torch.empty(0, dtype=torch.uint8)


class TensorReader:
    """Reads tensors of one file one at a time into fresh tensors of the file's dtype (no full copy); with
    `map_weights`, `read` returns views of the file's mapping instead (`mapping.copied` counts unaligned ones)."""

    def __init__(self, header: SafetensorsHeader, map_weights: bool = False, scratch: ScratchBuffer | None = None):
        self.header = header
        self._file = header.path.open("rb")
        # Reused for conversions (no churn of freed buffers); the shards of one folder share one (ShardedWeightFile).
        self._scratch = scratch or ScratchBuffer()
        self.mapping = FileMapping(header.path) if map_weights else None

    def read(self, name: str) -> torch.Tensor:
        info = self.header.tensors[name]
        if self.mapping is not None:
            return self.mapping.tensor(info.start, info.end, info.torch_dtype, info.shape)
        return self._read_into(name, torch.empty(info.shape, dtype=info.torch_dtype))

    def read_as(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The tensor in `dtype`; when that is not the file's, the bytes go through one reused scratch buffer, so
        memory holds the result and the largest tensor's bytes, never a fresh temporary per tensor."""
        info = self.header.tensors[name]
        if info.torch_dtype == dtype:
            return self.read(name)
        return torch.empty(info.shape, dtype=dtype).copy_(self.read_temporary(name))

    def read_temporary(self, name: str) -> torch.Tensor:
        """The tensor in the file's dtype inside the reused scratch buffer: valid only until the next read through it
        (for a conversion such as fp8 quantisation that writes its own result)."""
        info = self.header.tensors[name]
        scratch = self._scratch.bytes(info.end - info.start)
        return self._read_into(name, scratch.view(info.torch_dtype).view(info.shape))

    def _read_into(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        info = self.header.tensors[name]
        if tensor.numel():
            self._file.seek(info.start)
            # A uint8 view of the tensor's memory: the bytes land in place, whatever the dtype (bf16, fp8).
            view = tensor.view(-1).view(torch.uint8).numpy()
            if self._file.readinto(view) != info.end - info.start:
                raise _broken(self.header.path, f"tensor {name!r} ends past the end of the file", "weights")
        return tensor

    def close(self) -> None:
        """Closes the file; a mapping stays alive as long as a tensor viewed from it does."""
        self._file.close()
        self._scratch.release()
        self.mapping = None

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
