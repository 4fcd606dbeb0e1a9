"""One weight file, whatever its container: names, dtypes and shapes up front, tensors read one at a time.

- .safetensors / .sft: the header only (formats/headers.py), tensors read with plain reads, or (`map_weights`)
  viewed from the file's private mapping where they are kept in the file's dtype.
- .pth / .pt (Wan-AI's Wan2.1_VAE.pth, Wan2.2_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth): torch.load with
  weights_only=True (no unpickling of code) and mmap=True (tensors stay on disk until read).
Anything else (GGUF, pickled .ckpt/.bin) is refused with a message that says what to use instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modules.base.model_loader import ModelLoadError
from modules.wan.formats.headers import SAFETENSORS_DTYPES, ScratchBuffer, TensorReader, read_header

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
TORCH_SUFFIXES = (".pth", ".pt")
_CODES = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}


class WeightFile:
    """`shapes` and `dtypes` (safetensors codes) of every tensor; `read(name)` returns one tensor."""

    def __init__(self, path: str | Path, what: str, map_weights: bool = False, scratch: ScratchBuffer | None = None):
        self.path = Path(path)
        self.what = what
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: the {what} file does not exist. Fix: check the path in the config.")
        if suffix in SAFETENSORS_SUFFIXES:
            self.header = read_header(self.path, what)
            self.shapes = {k: t.shape for k, t in self.header.tensors.items()}
            self.dtypes = {k: t.dtype for k, t in self.header.tensors.items()}
            self._reader: TensorReader | None = TensorReader(self.header, map_weights, scratch)
            self._state = None
        elif suffix in TORCH_SUFFIXES:
            self.header = None
            self._reader = None
            self._state = _torch_load(self.path, what)
            self.shapes = {k: tuple(v.shape) for k, v in self._state.items()}
            self.dtypes = {k: _CODES.get(v.dtype, str(v.dtype)) for k, v in self._state.items()}
        else:
            hint = (
                "GGUF files are quantised for inference only"
                if suffix == ".gguf"
                else (
                    "pickled checkpoints can run code when loaded"
                    if suffix in (".ckpt", ".bin", ".pkl")
                    else "unknown file type"
                )
            )
            raise ModelLoadError(
                f"{self.path}: unsupported format for the {what} ({suffix or 'no suffix'}: {hint}). Expected: a "
                f".safetensors "
                "single file (fp32, bf16, fp16, fp8 or fp8 scaled), a Wan-AI .pth file, or a diffusers folder. "
                "Fix: download the .safetensors version of this model (e.g. from Comfy-Org/Wan_2.2_ComfyUI_Repackaged)."
            )

    def read(self, name: str) -> torch.Tensor:
        if self._reader is not None:
            return self._reader.read(name)
        return self._state[name]

    def read_as(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        if self._reader is not None:
            return self._reader.read_as(name, dtype)
        return self._state[name].to(dtype)  # .pth: mmap-backed, converted from the page cache

    def read_temporary(self, name: str) -> torch.Tensor:
        """`read` without a fresh tensor: valid only until the next read (safetensors: one reused scratch buffer)."""
        if self._reader is not None:
            return self._reader.read_temporary(name)
        return self._state[name]

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._state = None

    def __enter__(self) -> WeightFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _torch_load(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # weights_only refusals, corrupt zips, old non-zip pickles
        raise ModelLoadError(
            f"{path}: cannot load the {what} .pth file safely ({type(error).__name__}: {error}). Expected: a "
            f"tensor-only "
            "state dict (torch.save of a dict of tensors), loaded with weights_only=True. "
            "Fix: re-download the file, or use its .safetensors version."
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(
            f"{path}: the {what} .pth file is not a dict of tensors. Fix: use the .safetensors version."
        )
    return state


class ShardedWeightFile:
    """The safetensors shards of one diffusers part folder read as one WeightFile (each name from its shard), so a
    folder streams into fp8 storage tensor by tensor exactly as a single file does (part_load.py)."""

    def __init__(self, paths: list[Path], what: str, map_weights: bool = False):
        # One scratch buffer for every shard: each shard's own held its largest tensor until the folder was read
        # (Wan-AI's A14B expert comes in 6 shards: ~0.8 GiB of bf16 FFN matrices beside the fp8 model).
        scratch = ScratchBuffer()
        self.files = [WeightFile(path, what, map_weights, scratch) for path in paths]
        self._owner = {name: file for file in self.files for name in file.shapes}
        self.shapes = {name: shape for file in self.files for name, shape in file.shapes.items()}
        self.dtypes = {name: dtype for file in self.files for name, dtype in file.dtypes.items()}

    def read(self, name: str) -> torch.Tensor:
        return self._owner[name].read(name)

    def read_as(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return self._owner[name].read_as(name, dtype)

    def read_temporary(self, name: str) -> torch.Tensor:
        """What fp8 storage quantises: a float32 weight rounded to bf16 first, as from_pretrained into bf16 then
        quantising gave it (the folder path's numbers before it streamed; the Wan-AI folders are bf16 anyway)."""
        value = self._owner[name].read_temporary(name)
        return value.to(torch.bfloat16) if value.dtype == torch.float32 else value

    def close(self) -> None:
        for file in self.files:
            file.close()
