"""Optimizers and learning-rate schedules: the registry of every optimizer (optimizer_registry.py), building them
and the schedules (optimizers.py, lr_schedules.py), one optimizer per group (per_group_optimizer.py) and
schedule-free eval weights (optimizer_modes.py)."""
