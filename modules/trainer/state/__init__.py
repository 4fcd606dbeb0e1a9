"""The run's state and keeping it: TrainingState, EMA, backups on disk (backups.py), what goes in them and resuming
(resume.py, parameter_names.py: tensors by name), RNG states."""
