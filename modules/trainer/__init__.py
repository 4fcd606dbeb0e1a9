"""The training loop (GenericTrainer) and what it runs beside it: optimizers, EMA, backups and resume,
samples and validation loss (hooks that get a TrainingState, not the trainer), the run log.
"""

__all__ = [
    "backups",
    "ema",
    "generic_trainer",
    "optimizers",
    "resume",
    "rng_state",
    "run_log",
    "sample_hooks",
    "sample_schedule",
    "training_state",
    "validation_loss",
]
