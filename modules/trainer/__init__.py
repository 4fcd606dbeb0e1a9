"""The training loop (GenericTrainer) and what it runs beside it: optimizers, EMA, backups and resume,
samples and validation loss, the run log and its events, the run's guards (preflight, workspace lock, out of
memory, non-finite loss, save fallback) and the diagnostics report (diagnostics.py).
"""
