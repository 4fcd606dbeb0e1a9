"""Samples and validation loss during training: when (sample_schedule.py), the hooks the loop calls
(sample_hooks.py) and the validation loss (validation_loss.py)."""
