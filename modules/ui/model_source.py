"""The Model tab's detection result: what each chosen model path holds, as the model family's plugin sees it
(through modules/registry.py; the GUI never imports a plugin), or the loader's own error. Detection reads
model files and imports the plugin, so it runs in the background worker (modules/ui/background.py).
"""

from __future__ import annotations

from pathlib import Path

import customtkinter as ctk

from modules.ui.run_process import REPO


def is_source_field(name: str) -> bool:
    """Model paths are the fields of the model section whose name ends in 'path'."""
    return name.startswith("model.") and name.endswith("path")


def describe_path(model_type: str, path: str) -> str:
    """One line about `path` (runs in the worker process)."""
    from modules.registry import describe_source

    where = Path(path) if Path(path).is_absolute() else REPO / path
    try:
        return describe_source(model_type, str(where) if where.exists() else path)
    except Exception as error:  # noqa: BLE001 - detection problems are shown, never fatal
        return f"{type(error).__name__}: {error}"


class ModelSourceInfo(ctk.CTkFrame):
    def __init__(self, parent, background):
        super().__init__(parent)
        self.background = background
        ctk.CTkLabel(self, text="Detected", font=ctk.CTkFont(weight="bold"), anchor="w").pack(fill="x", padx=8)
        self.label = ctk.CTkLabel(self, text="choose a model path", anchor="w", justify="left", wraplength=500)
        self.label.pack(fill="x", padx=8, pady=(0, 6))
        self.cache: dict[tuple[str, str], str] = {}
        self.shown: tuple[str, dict[str, str]] = ("", {})
        self.text = ""

    def update_sources(self, model_type: str, paths: dict[str, str]) -> None:
        self.shown = (model_type, paths)
        for path in paths.values():
            key = (model_type, path)
            if path and key not in self.cache:
                self.cache[key] = "detecting..."
                self.background.submit(
                    f"detect {key}",
                    f"detecting {Path(path).name}",
                    lambda text, k=key: self._detected(k, text),
                    describe_path,
                    model_type,
                    path,
                )
        self._redraw()

    def _detected(self, key: tuple[str, str], text) -> None:
        self.cache[key] = text if isinstance(text, str) else f"{type(text).__name__}: {text}"
        self._redraw()

    def pending(self) -> bool:
        return "detecting..." in self.cache.values()

    def _redraw(self) -> None:
        model_type, paths = self.shown
        lines = [f"{name.rsplit('.', 1)[-1]}: {self.cache[(model_type, p)]}" for name, p in paths.items() if p]
        self.text = "\n".join(lines) or "choose a model path"
        self.label.configure(text=self.text)
