"""Settings: every field declared once (train_config.py, sampling_config.py) with type, default, help and
choices; loading.py reads and checks a config file (migrations.py upgrades old versions, validation.py
checks values); docs.py generates docs/configuration.md.
"""
