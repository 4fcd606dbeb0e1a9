"""The training window: presets bar on top, the settings tabs on the left, the Run area on the right (visible
from every tab). It talks to the config (fields, validation, files), the registry (model detection, in the
background worker) and the training process only.

Nothing slow runs on Tk's thread: detection, memory planning and concept scans go to modules/ui/background.py,
and the bar on top says what is being worked on. Closing while a run goes on asks what to do with it
(docs/ui.md "Closing during a run"); a window opened on a workspace with a live run attaches to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from tkinter import filedialog

import customtkinter as ctk

from modules.config.loading import save_config
from modules.config.train_config import TrainConfig
from modules.config.validation import ConfigError
from modules.ui.background import Background
from modules.ui.choice_dialog import ChoiceDialog
from modules.ui.concept_cards import ConceptEditor
from modules.ui.config_form import ConfigForm, key_of
from modules.ui.data_preview import DataPreview
from modules.ui.field_widgets import ERROR_COLOR
from modules.ui.memory_hint import memory_hint
from modules.ui.model_source import ModelSourceInfo, is_source_field
from modules.ui.run_panel import RunPanel, workspace_of
from modules.ui.run_process import REPO, run_files
from modules.ui.samples_gallery import SamplesGallery
from modules.ui.settings_tabs import SettingsTabs
from modules.ui.tools_tab import ToolsTab
from modules.util.errors import UserError

VALIDATE_DELAY_MS = 250
HEARTBEAT_MS = 200  # lets Python run its signal handlers (a terminal's Ctrl-C, SIGTERM) while Tk waits


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
        self.busy_label = ctk.CTkLabel(bar, text="", anchor="e", text_color=("#1f6aa5", "#6aa9e0"))
        self.busy_label.pack(side="right", padx=8)
        self.background = Background(self, self._show_busy)
        self.close_dialog: ChoiceDialog | None = None
        self.closing = False
        self.signal_received: str | None = None
        self.protocol("WM_DELETE_WINDOW", self.close_clicked)
        # Tk's entries on X11 take Ctrl+A as "start of line"; people expect "select all".
        self.bind_class("Entry", "<Control-a>", _select_all)

        body = ctk.CTkFrame(self, fg_color="transparent")
        body.pack(fill="both", expand=True, padx=6, pady=6)
        body.grid_columnconfigure(0, weight=3)
        body.grid_columnconfigure(1, weight=2, minsize=420)
        body.grid_rowconfigure(0, weight=1)
        self.form = ConfigForm(config_class, self._changed)
        self.form.list_editors["data.concepts"] = lambda parent, spec, on_change: ConceptEditor(
            parent, spec, on_change, self.background
        )
        self.tabs = SettingsTabs(body, self.form)
        self.tabs.grid(row=0, column=0, sticky="nsew", padx=(0, 6))
        self.model_info = ModelSourceInfo(self.tabs.page_of_tab("Model"), self.background)
        self.model_info.pack(fill="x", padx=4, pady=4, before=self.tabs.bodies["Model"])
        self.data_preview = DataPreview(self.tabs.page_of_tab("Data"), self.form, self.background)
        self.data_preview.pack(fill="x", padx=4, pady=4)
        self.gallery = SamplesGallery(self.tabs.page_of_tab("Sampling"), self.samples_folder)
        self.gallery.pack(fill="x", padx=4, pady=4)
        self.tools_tab = ToolsTab(self.tabs.extra_page("Tools"), self.current_config)
        self.tools_tab.pack(fill="both", expand=True)
        self.run_panel = RunPanel(body, self.current_config)
        self.run_panel.grid(row=0, column=1, sticky="nsew")

        self.memory_text = ""
        if config_path:
            self.open_config(config_path)
        else:
            self.form.load({})
            self.validate_now()
        self.after(HEARTBEAT_MS, self._heartbeat)
        self.after(1, self._build_step)

    def _build_step(self) -> None:
        """Build the other tabs' fields a slice at a time, between events (settings_tabs.py)."""
        if self.tabs.build_some():
            self.after(1, self._build_step)
        else:
            self.validate_now()  # now every field can show its message

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
        errors = self.form.errors
        if len(errors) > 1:
            message = f"{len(errors)} problems:\n" + "\n".join(f"- {text}" for _, text in errors)
        self.run_panel.set_config_state(message is None, message)
        self.tabs.mark_tabs({self.tabs.tab_of_field(name or key_of(text)) for name, text in errors})
        values = self.form.values()
        self.tabs.show_method(values.get("training_method"))
        self.tabs.show_applicable(values)
        sources = {f"model.{key}": value for key, value in values.get("model", {}).items()}
        sources = {name: value for name, value in sources.items() if is_source_field(name) and value}
        self.model_info.update_sources(values.get("model_type"), sources)
        self._check_concepts(values, message)
        self._plan_memory(message is None)
        self._attach_if_running()
        return message

    def _check_concepts(self, values: dict, problem: str | None) -> None:
        """The concept cards' counts, previews and skip reasons (a check run by the background worker)."""
        editor = self.form.lists.get("data.concepts")
        if isinstance(editor, ConceptEditor):
            editor.inspect(values) if problem is None else editor.not_checkable(problem.splitlines()[0])

    def _plan_memory(self, valid: bool) -> None:
        config = self.current_config() if valid else None
        if config is None:
            self.run_panel.set_memory_hint("")
            return
        self.run_panel.set_memory_hint("estimating peak memory...")
        self.background.submit("memory", "estimating memory", self._memory_planned, memory_hint, config)

    def _memory_planned(self, text) -> None:
        self.memory_text = text if isinstance(text, str) else f"memory estimate failed: {text}"
        self.run_panel.set_memory_hint(self.memory_text)

    def _show_busy(self, labels: list[str]) -> None:
        self.busy_label.configure(text=f"working: {', '.join(labels)}..." if labels else "")

    def _attach_if_running(self) -> None:
        """Follow a run that is going on in the configured workspace (started by an earlier window)."""
        config = self.current_config()
        if config is not None and self.run_panel.run is None:
            self.run_panel.attach(workspace_of(config))

    # ---- closing ------------------------------------------------------------------------------------
    def close_clicked(self) -> None:
        """The window manager's close button: with a run going on, ask what becomes of it."""
        run = self.run_panel.run
        if run is None:
            self.close_now()
            return
        if self.close_dialog is not None and self.close_dialog.winfo_exists():
            self.close_dialog.lift()
            return
        _, log, _ = run_files(run.workspace)
        message = (
            f"Training is running in {run.workspace} (PID {run.pid}, step {self.run_panel.step}).\n\n"
            "Stop: the trainer finishes this step, writes a backup (Resume continues from it), then the window "
            "closes.\n\n"
            f"Leave it running: it trains on without a window; its output goes to {log}. To watch or stop it "
            "again, open this window on the same config: it attaches to the run. Or stop it from a shell with "
            f"'kill -INT {run.pid}' (a clean stop with a backup)."
        )
        self.close_dialog = ChoiceDialog(
            self,
            "A training run is going on",
            message,
            [
                ("Stop it with a backup, then close", self.stop_then_close),
                ("Leave it running and close", self.detach_and_close),
                ("Cancel", lambda: None),
            ],
        )

    def stop_then_close(self) -> None:
        panel = self.run_panel
        if panel.run is None:
            self.close_now()
            return
        if panel.run.stops_sent == 0:  # a second stop signal would end it at once, without the backup
            panel.stop()
        self.closing = True
        panel.on_finished = self.close_now
        self.file_label.configure(text="closing once the run has stopped and written its backup...")

    def detach_and_close(self) -> None:
        if self.run_panel.run is not None:
            self.run_panel.run.detach()
        self.close_now()

    def close_now(self) -> None:
        self.background.shutdown()
        self.destroy()

    def _heartbeat(self) -> None:
        if self.signal_received is not None:  # set by train_ui.py's handler: no one can answer a question now
            self.signal_received = None
            self.stop_then_close()
        self.after(HEARTBEAT_MS, self._heartbeat)

    def samples_folder(self) -> Path | None:
        config = self.current_config()
        return workspace_of(config) / "samples" if config is not None else None

    def current_config(self):
        """The validated config (the last validation's, unless a change is waiting to be validated)."""
        if self.pending_validation is None:
            return self.form.valid_config
        try:
            return self.form.config()
        except ConfigError:
            return None


def _select_all(event) -> str:
    event.widget.select_range(0, "end")
    event.widget.icursor("end")
    return "break"
