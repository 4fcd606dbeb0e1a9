"""The training window: presets bar on top, the settings tabs on the left, the Run area on the right (visible
from every tab). It talks to the config (fields, validation, files), the registry (model detection) and the
training process only.
"""

from __future__ import annotations

import json
from pathlib import Path
from tkinter import filedialog

import customtkinter as ctk

from modules.config.loading import save_config
from modules.config.train_config import TrainConfig
from modules.config.validation import ConfigError
from modules.ui.config_form import ConfigForm
from modules.ui.data_preview import DataPreview
from modules.ui.field_widgets import ERROR_COLOR
from modules.ui.memory_hint import memory_hint
from modules.ui.model_source import ModelSourceInfo, is_source_field
from modules.ui.run_panel import RunPanel
from modules.ui.run_process import REPO
from modules.ui.settings_tabs import SettingsTabs
from modules.util.errors import UserError

VALIDATE_DELAY_MS = 250


class TrainWindow(ctk.CTk):
    def __init__(self, config_class: type = TrainConfig, config_path: str | Path | None = None):
        super().__init__()
        self.title("WAN 2.2 trainer")
        self.geometry("1360x860")
        self.minsize(900, 560)
        self.config_path: Path | None = None
        self.pending_validation = None

        bar = ctk.CTkFrame(self)
        bar.pack(fill="x", padx=6, pady=(6, 0))
        ctk.CTkButton(bar, text="Open config / preset...", command=self._open_clicked).pack(side="left", padx=4, pady=4)
        ctk.CTkButton(bar, text="Save config as...", command=self._save_clicked).pack(side="left", padx=4, pady=4)
        self.file_label = ctk.CTkLabel(bar, text="new config", anchor="w")
        self.file_label.pack(side="left", padx=8)

        body = ctk.CTkFrame(self, fg_color="transparent")
        body.pack(fill="both", expand=True, padx=6, pady=6)
        body.grid_columnconfigure(0, weight=3)
        body.grid_columnconfigure(1, weight=2, minsize=420)
        body.grid_rowconfigure(0, weight=1)
        self.form = ConfigForm(config_class, self._changed)
        self.tabs = SettingsTabs(body, self.form)
        self.tabs.grid(row=0, column=0, sticky="nsew", padx=(0, 6))
        self.model_info = ModelSourceInfo(self.tabs.page_of_tab("Model"))
        first_on_model_tab = next(f for s, f in self.tabs.section_frames.items() if self.tabs.section_tab[s] == "Model")
        self.model_info.pack(fill="x", padx=4, pady=4, before=first_on_model_tab)
        self.data_preview = DataPreview(self.tabs.page_of_tab("Data"), self.form)
        self.data_preview.pack(fill="x", padx=4, pady=4)
        self.run_panel = RunPanel(body, self.current_config)
        self.run_panel.grid(row=0, column=1, sticky="nsew")

        if config_path:
            self.open_config(config_path)
        else:
            self.form.load({})
            self.validate_now()

    # ---- config files -------------------------------------------------------------------------------
    def open_config(self, path: str | Path) -> bool:
        """Show a preset or saved config; a file the trainer would refuse is shown with its problem marked."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ConfigError("the config must be a JSON object")
            self.form.load(data)
        except (OSError, json.JSONDecodeError, UserError) as error:  # any problem a user can fix is shown
            self.file_label.configure(text=f"{path}: cannot open ({error})", text_color=ERROR_COLOR)
            return False
        self.config_path = path
        self.file_label.configure(text=str(path), text_color=("gray10", "gray90"))
        self.validate_now()
        return True

    def save_config(self, path: str | Path) -> bool:
        """Write the settings as a config file that scripts/train.py --config-path runs unchanged."""
        try:
            config = self.form.config()
        except ConfigError as error:
            self.validate_now()
            self.file_label.configure(text=f"not saved: {error}", text_color=ERROR_COLOR)
            return False
        save_config(config, Path(path))
        self.config_path = Path(path)
        self.file_label.configure(text=f"saved {path}", text_color=("gray10", "gray90"))
        return True

    def _open_clicked(self) -> None:
        path = filedialog.askopenfilename(
            initialdir=REPO / "training_presets", filetypes=[("Training config", "*.json"), ("All files", "*")]
        )
        if path:
            self.open_config(path)

    def _save_clicked(self) -> None:
        path = filedialog.asksaveasfilename(defaultextension=".json", filetypes=[("Training config", "*.json")])
        if path:
            self.save_config(path)

    # ---- validation ---------------------------------------------------------------------------------
    def _changed(self) -> None:
        if self.pending_validation is None:
            self.pending_validation = self.after(VALIDATE_DELAY_MS, self.validate_now)

    def validate_now(self) -> str | None:
        """Check the settings as the trainer will; mark the field at fault and enable Start only when valid."""
        if self.pending_validation is not None:
            self.after_cancel(self.pending_validation)
            self.pending_validation = None
        message = self.form.validate()
        self.run_panel.set_config_state(message is None, message)
        fields = self.form.fields
        self.tabs.show_method(fields["training_method"].get())
        sources = {name: widget.get() for name, widget in fields.items() if is_source_field(name)}
        self.model_info.update_sources(fields["model_type"].get(), sources)
        self.run_panel.set_memory_hint(memory_hint(self.form.config()) if message is None else "")
        return message

    def current_config(self):
        try:
            return self.form.config()
        except ConfigError:
            return None
