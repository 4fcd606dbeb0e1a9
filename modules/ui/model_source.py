"""The Model tab's detection result: what each chosen model path holds, as the model family's plugin sees it
(through modules/registry.py; the GUI never imports a plugin), or the loader's own error.
"""

from __future__ import annotations

from pathlib import Path

import customtkinter as ctk

from modules.registry import describe_source
from modules.ui.run_process import REPO


def is_source_field(name: str) -> bool:
    """Model paths are the fields of the model section whose name ends in 'path'."""
    return name.startswith("model.") and name.endswith("path")


class ModelSourceInfo(ctk.CTkFrame):
    def __init__(self, parent):
        super().__init__(parent)
        ctk.CTkLabel(self, text="Detected", font=ctk.CTkFont(weight="bold"), anchor="w").pack(fill="x", padx=8)
        self.label = ctk.CTkLabel(self, text="choose a model path", anchor="w", justify="left", wraplength=500)
        self.label.pack(fill="x", padx=8, pady=(0, 6))
        self.cache: dict[tuple[str, str], str] = {}
        self.text = ""

    def update_sources(self, model_type: str, paths: dict[str, str]) -> None:
        lines = []
        for name, path in paths.items():
            if not path:
                continue
            key = (model_type, path)
            if key not in self.cache:
                where = Path(path) if Path(path).is_absolute() else REPO / path
                try:
                    self.cache[key] = describe_source(model_type, str(where) if where.exists() else path)
                except Exception as error:  # noqa: BLE001 - detection problems are shown, never fatal
                    self.cache[key] = f"{type(error).__name__}: {error}"
            lines.append(f"{name.rsplit('.', 1)[-1]}: {self.cache[key]}")
        self.text = "\n".join(lines) or "choose a model path"
        self.label.configure(text=self.text)
