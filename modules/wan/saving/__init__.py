"""The savers the trainer calls: WanLoRASaver, the full-model saver and the embedding saver."""
