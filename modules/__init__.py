"""The trainer (generic loop), its contract, shared pieces and the model plugins."""

__all__ = ["base", "config", "data", "module", "trainer", "ui", "util", "wan", "registry"]
