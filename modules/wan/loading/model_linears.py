"""The linear layers of a model folder, from its headers: what `scripts/convert_model.py lora --model` checks a LoRA
against (modules/wan/formats/lora_compatibility.py compares them). It lives with the loading code because it detects
the variant from the folder.
"""

from __future__ import annotations

from pathlib import Path

from modules.wan.formats.headers import read_header
from modules.wan.loading.detection import detect_variant


def model_folder_linears(folder: str | Path) -> tuple[str, dict[str, tuple[int, int]]]:
    """(variant name, linear_shapes) of a diffusers model folder, from its transformer's headers (no weights read)."""
    folder = Path(folder)
    variant = detect_variant(folder)
    linears: dict[str, tuple[int, int]] = {}
    for shard in sorted((folder / "transformer").glob("*.safetensors")):
        for name, tensor in read_header(shard, "transformer").tensors.items():
            if name.endswith(".weight") and len(tensor.shape) == 2:
                linears[name.removesuffix(".weight")] = (tensor.shape[0], tensor.shape[1])
    return variant.name, linears
