"""Caption encoding with trainable embedding vectors: WanModel.encode_text, differentiable in the vectors.

During embedding training the vectors change every step, so captions that contain the placeholder cannot come
from the cache; they are encoded here, on the fly, with the current vectors in place of their token rows.
With the vectors equal to those rows the result equals `WanModel.encode_text` (tests/test_embedding.py).
"""

from __future__ import annotations

import torch

from modules.wan.embeddings.vectors import LoadedEmbedding, expand_prompt, input_embeddings
from modules.wan.model import trim_to_tokens


def encode_text_with_vectors(
    model, prompts: list[str], embedding: LoadedEmbedding, vectors: torch.Tensor
) -> list[torch.Tensor]:
    """UMT5 hidden states of each prompt trimmed to its real tokens (float32, on the text encoder's device)."""
    ids, mask = model.tokenize([expand_prompt(model, p) for p in prompts])
    embeds = input_embeddings(model)(ids)
    for row, token_id in enumerate(embedding.token_ids):
        embeds = torch.where((ids == token_id).unsqueeze(-1), vectors[row].to(embeds.dtype), embeds)
    hidden = model.text_encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    return trim_to_tokens(hidden, mask)
