"""The trainer (generic loop), its contract, shared pieces and the model plugins."""
