"""The savers the trainer calls: WanLoRASaver, the full-model saver and the embedding saver."""

__all__ = ["embedding_saver", "full_saver", "lora_saver"]
