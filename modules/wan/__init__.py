"""The WAN 2.2 plugin (TI2V-5B, T2V-A14B, I2V-A14B), by role.

variants.py (the three models as data), model.py (WanModel), loading/ (one way in: every part from a
source), formats/ (key maps, LoRA and single-file formats), training/ (setups, experts, conditioning, data),
saving/, sampling/, embeddings/, tiny_models.py (real classes at tiny sizes, for tests and the demo).
"""

__all__ = [
    "embeddings",
    "formats",
    "loading",
    "memory",
    "model",
    "sampling",
    "saving",
    "tiny_models",
    "training",
    "variants",
]
