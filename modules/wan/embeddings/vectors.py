"""Textual-inversion embeddings for WAN's UMT5 text encoder: files, and loading them into a WanModel.

Loading an embedding adds its tokens to `model.tokenizer` and writes its vectors into the matching rows of
`model.text_encoder`'s input embeddings, so every consumer of the model (our caching, diffusers' pipelines the
sampler builds over the model) uses it with no further change. A one-vector embedding is one token, the
placeholder itself; an N-vector embedding is the tokens `<p>`, `<p>_1`, ..., `<p>_{N-1}`, and a prompt must
say all of them: `expand_prompt` rewrites `<p>` to that list (the tokenizer matches the longest token, so
`<p>_1` is never read as `<p>` + `_1`).

File: safetensors with one tensor `umt5` of shape (num_vectors, text_dim), float32 by default, and metadata
naming the placeholder (see docs/embeddings.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tokenizers import AddedToken

from modules.util.atomic import save_safetensors_atomic
from modules.util.device import DTYPES
from modules.util.errors import ConfigError, UserError

VECTORS_KEY = "umt5"
PLACEHOLDER_KEY, NUM_VECTORS_KEY, FORMAT_KEY = (
    "wan.embedding_placeholder",
    "wan.embedding_num_vectors",
    "wan.embedding_format",
)
FORMAT_VERSION = "1"
# How placeholders are tokenized (part of the cache identity, so captions encoded under an earlier rule are
# encoded again): "lstrip" = the token takes the space before it (see add_embedding).
TOKENIZATION = "lstrip"


class EmbeddingError(UserError, ValueError):
    pass


@dataclass
class LoadedEmbedding:
    placeholder: str
    token_ids: list[int]
    trainable: bool = False
    # While training: the float32 vectors being optimised (the rows hold them rounded to the encoder's dtype).
    parameter: torch.Tensor | None = None


def token_names(placeholder: str, num_vectors: int) -> list[str]:
    return [placeholder] + [f"{placeholder}_{i}" for i in range(1, num_vectors)]


# ---- files -------------------------------------------------------------------------------------------
def save_embedding_file(
    path: str | Path,
    placeholder: str,
    vectors: torch.Tensor,
    metadata: dict[str, str] | None = None,
    dtype: str = "float32",
) -> Path:
    if dtype not in DTYPES:
        raise EmbeddingError(f"dtype {dtype!r} is unknown; choose one of {', '.join(DTYPES)}")
    file_metadata = {
        **(metadata or {}),
        "format": "pt",
        PLACEHOLDER_KEY: placeholder,
        NUM_VECTORS_KEY: str(vectors.shape[0]),
        FORMAT_KEY: FORMAT_VERSION,
        "wan.embedding_tokens": json.dumps(token_names(placeholder, vectors.shape[0])),
    }
    return save_safetensors_atomic({VECTORS_KEY: vectors.detach().to("cpu", DTYPES[dtype])}, path, file_metadata)


def read_embedding_file(path: str | Path) -> tuple[str, torch.Tensor, dict[str, str]]:
    """(placeholder, float32 vectors of shape (num_vectors, dim), metadata)."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingError(
            f"{path}: no such embedding file. Fix: check embedding.continue_from / embedding.frozen_embeddings"
        )
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = dict(file.metadata() or {})
            keys = list(file.keys())
            vectors = file.get_tensor(VECTORS_KEY) if VECTORS_KEY in keys else None
    except Exception as error:  # safetensors raises several types for truncated or foreign files
        raise EmbeddingError(f"{path}: not a readable .safetensors file ({type(error).__name__}: {error})") from error
    placeholder = metadata.get(PLACEHOLDER_KEY, "")
    if vectors is None or vectors.ndim != 2 or not placeholder:
        raise EmbeddingError(
            f"{path}: not a WAN UMT5 embedding. Expected: a tensor '{VECTORS_KEY}' of shape (vectors, dim) and the "
            f"metadata '{PLACEHOLDER_KEY}'; found tensors {keys[:5]}. Fix: use a file written by this trainer."
        )
    return placeholder, vectors.float(), metadata


# ---- a model's embeddings -----------------------------------------------------------------------------
def loaded_embeddings(model) -> dict[str, LoadedEmbedding]:
    """Placeholder -> LoadedEmbedding of everything loaded into this model (kept on the model object)."""
    return vars(model).setdefault("embeddings", {})


def input_embeddings(model) -> torch.nn.Embedding:
    return model.text_encoder.get_input_embeddings()


def add_embedding(model, placeholder: str, vectors: torch.Tensor, trainable: bool = False) -> LoadedEmbedding:
    """Add the tokens of `placeholder` to the tokenizer and write `vectors` into their embedding rows."""
    table = input_embeddings(model)
    if vectors.ndim != 2 or vectors.shape[1] != table.embedding_dim:
        raise EmbeddingError(
            f"embedding {placeholder!r}: vectors of shape {tuple(vectors.shape)} do not fit this text encoder "
            f"(dim {table.embedding_dim}). Fix: use an embedding trained on the same WAN text encoder."
        )
    names = token_names(placeholder, vectors.shape[0])
    vocab = model.tokenizer.get_vocab()
    taken = [name for name in names if name in vocab or "\u2581" + name in vocab]
    if taken or not placeholder.strip() or placeholder != placeholder.strip():
        raise EmbeddingError(
            f"embedding placeholder {placeholder!r}: "
            + (
                f"tokens {taken} are already known to the tokenizer"
                if taken
                else "must be a word without surrounding spaces"
            )
            + " (a placeholder must be a new word, and each embedding may be loaded once). "
            "Fix: choose another placeholder such as '<my-concept>'."
        )
    # lstrip: a token takes the space before it, so no lone "▁" token precedes the vectors. ComfyUI inserts an
    # embedding's vectors right after the previous word's tokens, with nothing between (its SDTokenizer), so
    # this is what makes `embedding:NAME` there encode exactly as `<p>` here (integrations/comfyui/).
    model.tokenizer.add_tokens([AddedToken(name, lstrip=True, rstrip=False, normalized=False) for name in names])
    ids = model.tokenizer.convert_tokens_to_ids(names)
    if max(ids) >= table.num_embeddings:
        # UMT5's table has spare rows beyond the vocabulary; only when they run out does it grow.
        model.text_encoder.resize_token_embeddings(max(ids) + 1)
    embedding = LoadedEmbedding(placeholder, ids, trainable)
    write_vectors(model, embedding, vectors)
    loaded_embeddings(model)[placeholder] = embedding
    return embedding


@torch.no_grad()
def write_vectors(model, embedding: LoadedEmbedding, vectors: torch.Tensor) -> None:
    weight = input_embeddings(model).weight
    weight[embedding.token_ids] = vectors.detach().to(weight.device, weight.dtype)


def read_vectors(model, embedding: LoadedEmbedding) -> torch.Tensor:
    return input_embeddings(model).weight[embedding.token_ids].detach().float().cpu()


def load_embedding(model, path: str | Path, trainable: bool = False) -> LoadedEmbedding:
    """Load an embedding file into `model` (tokenizer and text encoder); the sampler and later runs call this."""
    placeholder, vectors, _ = read_embedding_file(path)
    try:
        return add_embedding(model, placeholder, vectors, trainable)
    except EmbeddingError as error:
        raise EmbeddingError(f"{path}: {error}") from None


def initial_vectors(model, init_text: str, num_vectors: int, seed: int = 0) -> torch.Tensor:
    """The rows of `init_text`'s tokens (without the end-of-text token), cycled to `num_vectors`; random at the
    table's scale when the text is empty."""
    weight = input_embeddings(model).weight.detach().float().cpu()
    if not init_text.strip():
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(num_vectors, weight.shape[1], generator=generator) * weight.std()
    ids = model.tokenizer(init_text, add_special_tokens=False).input_ids
    ids = [i for i in ids if weight[i].abs().sum() > 0] or ids  # skip all-zero rows (pure-space pieces)
    if not ids:
        raise EmbeddingError(f"embedding.init_text {init_text!r} has no tokens; use a word, or leave it empty")
    return torch.stack([weight[ids[i % len(ids)]] for i in range(num_vectors)])


# ---- prompts and cache keys ---------------------------------------------------------------------------
def expand_prompt(model, prompt: str) -> str:
    """Write each multi-vector placeholder as all its tokens (`<p>` -> `<p> <p>_1 <p>_2`).

    Idempotent: a prompt that already names every token is left as it is (the sampler, the caption cache and a
    user may each expand), so the tokens are never doubled."""
    for placeholder, embedding in loaded_embeddings(model).items():
        if len(embedding.token_ids) > 1:
            expanded = " ".join(token_names(placeholder, len(embedding.token_ids)))
            # The full list first, so an already expanded prompt matches it whole and is replaced by itself.
            pattern = re.escape(expanded) + "|" + re.escape(placeholder) + r"(?!_\d)"
            prompt = re.sub(pattern, lambda _: expanded, prompt)
    return prompt


def embedding_identity(model) -> str:
    """A hash of every loaded embedding's tokens and current vectors ('' with none): caption caches include it,
    so an entry made with other (or no) embedding vectors is never reused."""
    embeddings = loaded_embeddings(model)
    if not embeddings:
        return ""
    digest = hashlib.sha256(TOKENIZATION.encode())
    for placeholder, embedding in sorted(embeddings.items()):
        digest.update(f"{placeholder}\0{embedding.token_ids}\0".encode())
        digest.update(input_embeddings(model).weight[embedding.token_ids].detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def trained_embedding(model) -> LoadedEmbedding:
    """The one embedding an `embedding` run trains (its setup trains it, its saver writes it)."""
    found = [e for e in loaded_embeddings(model).values() if e.trainable]
    if len(found) != 1:
        raise ConfigError(
            "training_method 'embedding' needs the model loaded by WanTrainingModelLoader "
            "(modules/registry.py), which adds the trained embedding"
        )
    return found[0]
