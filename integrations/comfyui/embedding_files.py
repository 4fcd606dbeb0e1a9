"""What the WAN UMT5 embeddings node needs besides ComfyUI: find the files a prompt names and check they fit.

No ComfyUI import here, so this runs (and is tested) without ComfyUI. The rules mirror ComfyUI's own
embedding lookup (comfy/sd1_clip.py, load_embed and SDTokenizer.tokenize_with_weights, read at commit
b55c2247 of comfyanonymous/ComfyUI): `embedding:NAME` at the start of a prompt or after a space or newline;
NAME is looked up in each embedding directory and its subfolders, as given or with .safetensors / .pt / .bin
appended, and must stay inside the directory; from a file, the tensor named `umt5xxl` is used, else the first.
So what this module finds is what ComfyUI's tokenizer then inserts, and a warning here means ComfyUI would
drop that embedding. Only safetensors files are opened (a .pt/.bin file would need unpickling; it is reported
as not checked).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

from safetensors import safe_open

log = logging.getLogger("wan22_trainer.comfyui")
EMBEDDING_PREFIX = "embedding:"
UMT5_KEY = "umt5xxl"  # ComfyUI's embedding_key of WAN's UMT5 tokenizer (comfy/text_encoders/wan.py)
EXTENSIONS = (".safetensors", ".pt", ".bin")
_REFERENCE = re.compile(r"(?:^|[\s(])" + re.escape(EMBEDDING_PREFIX) + r"([^\s,()]+)")


def referenced_names(prompt: str) -> list[str]:
    """The embedding names a prompt uses (`embedding:NAME`; a `:weight` inside parentheses is not part of it)."""
    names = []
    for raw in _REFERENCE.findall(prompt):
        name = re.sub(r":[0-9.]+$", "", raw)
        if name and name not in names:
            names.append(name)
    return names


def _with_subfolders(directories: list[str]) -> list[str]:
    found = []
    for directory in directories:
        found.append(directory)
        found.extend(root for root, _, _ in os.walk(directory, followlinks=True) if root != directory)
    return found


def find_embedding_file(name: str, directories: list[str]) -> Path | None:
    """The file `embedding:NAME` resolves to, or None (as ComfyUI: inside a directory, extensions tried)."""
    for directory in _with_subfolders(directories):
        root = os.path.abspath(directory)
        path = os.path.abspath(os.path.join(root, name))
        if os.path.commonpath((root, path)) != root:
            continue  # ../ out of the embedding directory
        if os.path.isfile(path):
            return Path(path)
        for extension in EXTENSIONS:
            if os.path.isfile(path + extension):
                return Path(path + extension)
    return None


def read_vectors(path: Path):
    """The (vectors, width) tensor ComfyUI would insert for a safetensors embedding file."""
    with safe_open(str(path), framework="pt") as file:
        keys = list(file.keys())
        if not keys:
            raise ValueError("it holds no tensor")
        return file.get_tensor(UMT5_KEY if UMT5_KEY in keys else keys[0])


def prompt_problems(prompt: str, directories: list[str], width: int) -> list[str]:
    """One message per `embedding:NAME` of the prompt that ComfyUI would drop: missing, unreadable, or vectors
    of another width than the text encoder's (`width`: 4096 for WAN 2.2's UMT5-XXL)."""
    problems = []
    for name in referenced_names(prompt):
        path = find_embedding_file(name, directories)
        if path is None:
            problems.append(
                f"embedding:{name} was not found in {', '.join(map(str, directories)) or 'no directory'} "
                f"(tried {name} and {name}{{{','.join(EXTENSIONS)}}}); the prompt is encoded without it. "
                "Fix: put the trainer's embedding file there, or set the node's embedding_directory"
            )
            continue
        if path.suffix != ".safetensors":
            problems.append(f"embedding:{name}: {path} is not a safetensors file; it was not checked")
            continue
        try:
            vectors = read_vectors(path)
        except Exception as error:  # safetensors raises several types for broken files
            problems.append(f"embedding:{name}: {path} cannot be read ({error}); ComfyUI skips it")
            continue
        if vectors.ndim not in (1, 2) or vectors.shape[-1] != width:
            problems.append(
                f"embedding:{name}: {path} holds vectors of shape {tuple(vectors.shape)}, this text encoder takes "
                f"width {width}; ComfyUI ignores it. Fix: use an embedding trained on WAN 2.2's UMT5 text encoder"
            )
    return problems


def umt5_tokenizers(tokenizer) -> dict[str, object]:
    """Attribute name -> WAN UMT5 tokenizer inside a CLIP's tokenizer (ComfyUI: `clip_umt5xxl`)."""
    return {
        name: value
        for name, value in vars(tokenizer).items()
        if getattr(value, "embedding_key", None) == UMT5_KEY and hasattr(value, "embedding_directory")
    }


def with_embeddings(tokenizer, directories: list[str]):
    """A copy of a CLIP's tokenizer whose UMT5 tokenizer has `directories` as its embedding directory (ComfyUI
    builds WAN's without one, which switches `embedding:` off), and whose prompts are checked first: every
    named embedding that is missing or does not fit logs a warning. The given tokenizer is left unchanged
    (ComfyUI's CLIP.clone() shares it with the original CLIP)."""
    inner = umt5_tokenizers(tokenizer)
    if not inner:
        raise ValueError(
            "this CLIP has no WAN UMT5 tokenizer (found "
            f"{sorted(vars(tokenizer))}). Fix: connect the CLIP of a WAN 2.1/2.2 text encoder (umt5_xxl)"
        )
    copied = copy.copy(tokenizer)
    for name, umt5 in inner.items():
        enabled = copy.copy(umt5)
        enabled.embedding_directory = list(directories)
        setattr(copied, name, enabled)
    width = next(iter(inner.values())).embedding_size
    tokenize = copied.tokenize_with_weights

    def checked_tokenize_with_weights(text, *args, **kwargs):
        for problem in prompt_problems(text, list(directories), width):
            log.warning(problem)
        return tokenize(text, *args, **kwargs)

    copied.tokenize_with_weights = checked_tokenize_with_weights
    return copied
