"""WanTrainingModelLoader: the model a WAN training run needs, whatever the method: WanModelLoader's model plus
the embeddings (frozen embedding files for every method, and the trained one for "embedding").

Embeddings are added right after loading, before captions are cached, so the cache keys (which include
`embedding_identity`) and the cached captions see exactly the tokens and vectors training uses.
"""

from __future__ import annotations

import logging

from modules.wan.embeddings.vectors import add_embedding, initial_vectors, load_embedding, read_embedding_file
from modules.wan.loading.loader import WanModelLoader
from modules.wan.model import WanModel

log = logging.getLogger("wan_trainer")


class WanTrainingModelLoader(WanModelLoader):
    """The plugin's loader (modules/registry.py) for LoRA, full and embedding training alike."""

    def load(self, config) -> WanModel:
        return self._add_embeddings(super().load(config), config)

    def load_for_caching(self, config) -> WanModel:
        """scripts/cache.py: the encoders with the same embeddings, so caption keys equal the training run's."""
        return self._add_embeddings(super().load_for_caching(config), config)

    def caches_before_loading(self, config) -> bool:
        """Cache with UMT5 and the VAE alone, then load the experts: the encoders and the experts are never in
        memory together. Not with embeddings: UMT5 then stays for the whole run (docs/embeddings.md), so it is read
        once, with the model."""
        return config.training_method != "embedding" and not config.embedding.frozen_embeddings

    def _add_embeddings(self, model: WanModel, config) -> WanModel:
        settings = config.embedding
        for path in settings.frozen_embeddings:
            embedding = load_embedding(model, path)
            log.info(
                "embedding %s loaded (frozen, %d vectors) from %s",
                embedding.placeholder,
                len(embedding.token_ids),
                path,
            )
        if config.training_method == "embedding":
            if settings.continue_from:
                placeholder, vectors, _ = read_embedding_file(settings.continue_from)
            else:
                placeholder = settings.placeholder
                vectors = initial_vectors(model, settings.init_text, settings.num_vectors, config.training.seed)
            add_embedding(model, placeholder, vectors, trainable=True)
        return model
