"""The training window (scripts/train_ui.py, docs/ui.md): customtkinter widgets built from the config fields' metadata;
it runs scripts/train.py as a child process and reads its events. Nothing here imports modules/wan (the registry's
`describe_source` gives model detection)."""
