"""The training window (scripts/train_ui.py, docs/ui.md): customtkinter widgets built from the config fields' metadata;
it runs scripts/train.py as a child process and reads its events. Nothing here imports modules/wan (the registry's
`describe_source` gives model detection)."""

from modules.ui.fonts import install as _install_fonts

_install_fonts()  # before any module here imports customtkinter (fonts.py says why)
