"""WanEmbeddingSaver: the trained embedding as a safetensors file (see embedding_loader for the layout)."""

from __future__ import annotations

from pathlib import Path

from modules.base.model_saver import BaseModelSaver
from modules.wan.embeddings.vectors import save_embedding_file, trained_embedding, write_vectors
from modules.wan.formats.lora_file import training_metadata
from modules.wan.model import WanModel


class WanEmbeddingSaver(BaseModelSaver):
    def save(self, model: WanModel, config, destination: Path) -> list[Path]:
        embedding = trained_embedding(model)
        vectors = embedding.parameter.detach().float().cpu()
        write_vectors(model, embedding, vectors)  # samples after the save use the final vectors
        metadata = {
            **training_metadata(config, model),
            "wan.variant": model.variant.name,
            "wan.text_encoder_identity": model.text_encoder_identity,
            "wan.embedding_init_text": config.embedding.init_text,
        }
        return [save_embedding_file(destination, embedding.placeholder, vectors, metadata, config.output.save_dtype)]
