"""The Run area, beside every tab: Start / Stop / Kill / Resume, the memory hint, progress, the live loss
plot, the latest sample and the log. Training runs in a child process (run_process.py); this panel reads its
output and events only from Tk's main thread, polling with `after()`.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import customtkinter as ctk

from modules.config.loading import save_config
from modules.trainer.guards import run_requests
from modules.trainer.guards.stop_request import EXIT_ABORTED, EXIT_STOPPED
from modules.ui.choice_dialog import ChoiceDialog
from modules.ui.field_widgets import ERROR_COLOR
from modules.ui.loss_plot import LossPlot
from modules.ui.run_process import REPO, RunProcess
from modules.ui.sample_view import SampleView

POLL_MS = 100
LOG_LINES = 2000
RESUME_ARGS = ["--config-value", "backup.continue_last_backup=true"]
DISABLED_FACE = ("gray72", "gray30")
BACKUP_PREFIX = "backup-"  # modules/trainer/state/backups.py's BACKUP_PREFIX
PROGRESS_BAR = re.compile(r"^(.{1,60}?):\s+\d+%\|")  # tqdm's "caching latents:  44%|###"


def workspace_of(config) -> Path:
    workspace = Path(config.output.workspace_dir)
    return workspace if workspace.is_absolute() else REPO / workspace  # the child runs in the repository


class RunPanel(ctk.CTkFrame):
    def __init__(self, parent, current_config: Callable[[], object | None]):
        super().__init__(parent)
        self.current_config = current_config
        self.run: RunProcess | None = None
        self.config_valid = False
        self.total_steps = 0
        self.step = 0
        self.step_times: list[float] = []
        self.status_kind = "idle"  # idle, running, done, stopped, failed, killed
        self.error_text: str | None = None
        self.user_error = False  # the child's error event says whether the user can fix it (a UserError)
        self.outputs: list[str] = []
        self.last_bar: str | None = None
        self.step_seen = False
        self.failed_config = None
        self.tensorboard: subprocess.Popen | None = None
        self.grid_columnconfigure(0, weight=1)

        buttons = ctk.CTkFrame(self, fg_color="transparent")
        buttons.grid(row=0, column=0, sticky="ew", padx=6, pady=(6, 2))
        self.start_button = ctk.CTkButton(buttons, text="Start", width=80, command=self.start)
        self.stop_button = ctk.CTkButton(buttons, text="Stop", width=90, command=self.stop, state="disabled")
        self.kill_button = ctk.CTkButton(
            buttons, text="Kill...", width=60, command=self.ask_kill, state="disabled", fg_color="#a33"
        )
        self.resume_button = ctk.CTkButton(buttons, text="Resume from latest backup", command=self.resume)
        for button in (self.start_button, self.stop_button, self.kill_button, self.resume_button):
            button.pack(side="left", padx=(0, 6))
        # While training: requests the trainer takes at its next step boundary (modules/trainer/guards/run_requests.py).
        during = ctk.CTkFrame(self, fg_color="transparent")
        during.grid(row=1, column=0, sticky="ew", padx=6, pady=(0, 2))
        self.request_buttons = {
            kind: ctk.CTkButton(during, text=text, width=100, command=lambda k=kind: self.request(k), state="disabled")
            for kind, text in (("sample", "Sample now"), ("backup", "Backup now"), ("save", "Save now"))
        }
        for button in self.request_buttons.values():
            button.pack(side="left", padx=(0, 6))
        self.tensorboard_button = ctk.CTkButton(during, text="TensorBoard", width=100, command=self.open_tensorboard)
        self.folder_button = ctk.CTkButton(during, text="Output folder", width=100, command=self.open_output_folder)
        self.tensorboard_button.pack(side="left", padx=(0, 6))
        self.folder_button.pack(side="left")
        self.has_backup = False
        self.button_faces: dict = {}  # each button's own colour, for when it is enabled again
        self.dialog = None
        self.on_finished: Callable[[], None] | None = None  # the window's close-after-stop
        self.memory_label = ctk.CTkLabel(self, text="", anchor="w", justify="left", wraplength=500)
        self.memory_label.grid(row=2, column=0, sticky="ew", padx=8)
        self.status_label = ctk.CTkLabel(self, text="", anchor="w", justify="left", wraplength=500)
        self.status_label.grid(row=3, column=0, sticky="ew", padx=8)
        self.progress_bar = ctk.CTkProgressBar(self)
        self.progress_bar.set(0)
        self.progress_bar.grid(row=4, column=0, sticky="ew", padx=8, pady=(6, 0))
        self.progress_label = ctk.CTkLabel(self, text="not started", anchor="w")
        self.progress_label.grid(row=5, column=0, sticky="ew", padx=8)
        self.loss_plot = LossPlot(self)
        self.loss_plot.grid(row=6, column=0, sticky="nsew", padx=6, pady=4)
        self.sample_view = SampleView(self)
        self.sample_view.grid(row=7, column=0, sticky="ew", padx=6, pady=4)
        self.log = ctk.CTkTextbox(self, height=160, wrap="word")
        self.log.grid(row=8, column=0, sticky="nsew", padx=6, pady=(4, 6))
        self.grid_rowconfigure(8, weight=1)

    # ---- state shown to the user --------------------------------------------------------------------
    def set_config_state(self, valid: bool, message: str | None) -> None:
        """Start for a config the trainer accepts, Resume when its workspace also has a backup; else the reason.
        A failure message from an earlier run is replaced once the settings change."""
        self.config_valid = valid
        config = self.current_config() if valid else None
        self.has_backup = config is not None and bool(_backups_in(workspace_of(config)))
        if self.status_kind in ("idle", "invalid", "valid", "failed") and self.run is None:
            if self.status_kind != "failed" or not valid or self.failed_config != config:
                self._status("valid" if valid else "invalid", "" if valid else f"cannot start: {message}")
        self._update_buttons()

    def set_memory_hint(self, text: str) -> None:
        self.memory_label.configure(text=text)

    def _status(self, kind: str, text: str) -> None:
        self.status_kind = kind
        bad = kind in ("failed", "invalid", "killed")
        self.status_label.configure(text=text, text_color=ERROR_COLOR if bad else ("gray10", "gray90"))

    def _update_buttons(self) -> None:
        running = self.run is not None
        can_start = self.config_valid and not running
        states = {
            self.start_button: can_start,
            self.resume_button: can_start and self.has_backup,
            self.stop_button: running,
            self.kill_button: running,
            **{button: running and self.step_seen for button in self.request_buttons.values()},
        }
        for button, enabled in states.items():
            # customtkinter greys only a disabled button's text; grey its face too, so it does not look pressable.
            face = self.button_faces.setdefault(button, button.cget("fg_color"))
            _configure_if_changed(
                button, state="normal" if enabled else "disabled", fg_color=face if enabled else DISABLED_FACE
            )
        _configure_if_changed(self.stop_button, text="Stop now" if running and self.run.stops_sent else "Stop")

    # ---- buttons ------------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        config = self.current_config()
        if config is None or self.run is not None:
            return
        workspace = workspace_of(config)
        config_path = workspace / "ui" / "run_config.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        save_config(config, config_path)
        self._follow(RunProcess.start(workspace, config_path, RESUME_ARGS if resume else []), fresh=not resume)
        self._status("running", "resuming from the latest backup..." if resume else "loading and caching...")

    def attach(self, workspace: Path) -> bool:
        """Follow the run going on in `workspace` (a window closed with "leave it running", or the CLI)."""
        if self.run is not None:
            return False
        run = RunProcess.attach(workspace)
        if run is None:
            return False
        self._follow(run, fresh=True)
        self._status("running", f"attached to the run going on in {workspace} (PID {run.pid})")
        return True

    def _follow(self, run: RunProcess, fresh: bool) -> None:
        self.run = run
        self.error_text, self.outputs, self.step_times = None, [], []
        self.user_error = False
        self.step = self.total_steps = 0
        self.step_seen = False
        self.progress_bar.set(0)
        self.progress_label.configure(text="starting...")
        if fresh:
            self.loss_plot.clear()
            self.sample_view.clear()
        self._append_log(f"$ {' '.join(run.command)}")
        self._update_buttons()
        self.after(POLL_MS, self.poll)

    def resume(self) -> None:
        self.start(resume=True)

    def stop(self) -> None:
        """First press: stop after this step with a backup. Second press ("Stop now"): end at once, keeping the
        backups written so far."""
        if self.run is None:
            return
        self.run.stop()
        if self.run.stops_sent == 1:
            self._status("running", "stopping after this step; a backup is written... (Stop now: end at once)")
        else:
            self._status("running", "ending at once; the backups written so far are kept")
        self._update_buttons()

    def ask_kill(self) -> None:
        if self.run is None:
            return
        self.dialog = ChoiceDialog(
            self.winfo_toplevel(),
            "Kill the run?",
            "Kill ends the training process immediately: no backup is written, and the steps since the last "
            "backup are lost. (Stop writes a backup first.)",
            [("Kill it now", self.kill), ("Cancel", lambda: None)],
        )

    def kill(self) -> None:
        if self.run is not None:
            self.run.kill()

    def request(self, kind: str) -> None:
        """Ask the trainer to sample / back up / save at its next step boundary."""
        if self.run is not None:
            run_requests.request(self.run.workspace, kind)
            self._append_log(f"(asked the trainer to {kind} at the next step)")

    def open_output_folder(self) -> None:
        config = self.current_config()
        if config is not None:
            folder = workspace_of(config)
            folder.mkdir(parents=True, exist_ok=True)
            self._append_log(f"output folder: {folder}")
            open_externally(str(folder))

    def open_tensorboard(self) -> None:
        config = self.current_config()
        if config is None:
            return
        logs = workspace_of(config) / "tensorboard"
        if not config.output.tensorboard and not logs.is_dir():
            self._append_log("TensorBoard: output.tensorboard is off and no logs exist; turn it on and start a run")
            return
        if self.tensorboard is None or self.tensorboard.poll() is not None:
            command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logs), "--port", "6006"]
            try:
                self.tensorboard = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )
            except OSError as error:
                self._append_log(f"TensorBoard did not start: {error}")
                return
            self._append_log(f"$ {' '.join(command)}")
        self._append_log("TensorBoard: http://localhost:6006")
        open_externally("http://localhost:6006")

    # ---- following the child ------------------------------------------------------------------------
    def poll(self) -> None:
        run = self.run
        if run is None:
            return
        for line in run.new_lines():
            self._append_log(line)
        for event in run.new_events():
            self.handle_event(event)
        code = run.finished()
        if code is None:
            self.after(POLL_MS, self.poll)
            return
        for line in run.new_lines():
            self._append_log(line)
        for event in run.new_events():
            self.handle_event(event)
        self.run = None
        self._finished(code)
        config = self.current_config()
        self.has_backup = config is not None and bool(_backups_in(workspace_of(config)))
        self._update_buttons()
        if self.on_finished is not None:
            self.on_finished()

    def handle_event(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            self.total_steps, self.step = event["total_steps"], event["start_step"]
            # A resumed run starts again at its backup's step: the plot keeps the points before it.
            self.loss_plot.points = [p for p in self.loss_plot.points if p[0] <= self.step]
            self._status("running", f"training from step {self.step}")
            self._show_progress(None, None)
            self.step_seen = True
            self._update_buttons()
        elif kind == "step":
            self.step, self.total_steps = event["step"], event["total_steps"]
            self.step_times.append(event["time"])
            self.loss_plot.add(event["step"], event["loss"])
            self._show_progress(event["loss"], event["lr"])
        elif kind == "sample":
            self.sample_view.show(Path(event["path"]))
        elif kind == "done":
            self.outputs = event["outputs"]
        elif kind == "stopped":
            self._status("stopped", event["text"])
        elif kind == "error":
            self.error_text = event["text"]
            self.user_error = bool(event.get("user_error"))

    def _show_progress(self, loss: float | None, lr: float | None) -> None:
        total = max(self.total_steps, 1)
        self.progress_bar.set(self.step / total)
        parts = [f"step {self.step}/{self.total_steps}"]
        if loss is not None:
            parts += [f"loss {loss:.4f}", f"lr {lr:.2e}"]
        recent = self.step_times[-11:]
        if len(recent) > 1:
            per_step = (recent[-1] - recent[0]) / (len(recent) - 1)
            eta = datetime.timedelta(seconds=round(per_step * (self.total_steps - self.step)))
            parts += [f"{per_step:.2f} s/step", f"ETA {eta}"]
        self.progress_label.configure(text="  ·  ".join(parts))

    def _finished(self, code: int) -> None:
        if code == 0:
            self._status("done", f"finished {self.step} steps; saved: {', '.join(self.outputs)}")
        elif code == EXIT_STOPPED:
            if self.status_kind != "stopped":
                self._status("stopped", "stopped; a backup was written")
        elif code == EXIT_ABORTED or code < 0:
            self._status("killed", f"the run was ended at once (exit {code}); earlier backups are kept")
        else:
            if self.step == 0:
                self.progress_label.configure(text="no step done")
            self.error_text = self.error_text or self._last_log_line()
            # A user error (a UserError in the child, exit 2 or 4) is a setting or file to fix; anything else is a
            # bug whose traceback is in the log above.
            kind = "" if self.user_error else "; an internal error, the log shows its traceback"
            self._status("failed", f"training failed (exit {code}{kind}): {self.error_text}")
            self.failed_config = self.current_config()

    # ---- log ----------------------------------------------------------------------------------------
    def _append_log(self, line: str) -> None:
        # A progress bar (caching) redraws itself with carriage returns: each redraw replaces the last one.
        line = line.rsplit("\r", 1)[-1]
        bar = PROGRESS_BAR.match(line)
        if bar and self.last_bar == bar.group(1):
            self.log.delete("end-2l", "end-1l")
        self.last_bar = bar.group(1) if bar else None
        self.log.insert("end", line + "\n")
        lines = int(self.log.index("end-1c").split(".")[0])
        if lines > LOG_LINES:
            self.log.delete("1.0", f"{lines - LOG_LINES}.0")
        self.log.see("end")

    def _last_log_line(self) -> str:
        lines = [line for line in self.log.get("1.0", "end").splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def _configure_if_changed(widget, **options) -> None:
    """Redraw a customtkinter widget only when an option really changes (each redraw costs milliseconds)."""
    changed = {key: value for key, value in options.items() if widget.cget(key) != value}
    if changed:
        widget.configure(**changed)


def _backups_in(workspace: Path) -> list[Path]:
    """The backup folders of `workspace` (as modules/trainer/state/backups.py names them; that module imports torch,
    which the window must not wait for)."""
    try:
        return [p for p in (workspace / "backups").iterdir() if p.name.startswith(BACKUP_PREFIX) and p.is_dir()]
    except OSError:
        return []


def open_externally(target: str) -> None:
    """Open a folder or address with the desktop's handler, without waiting for it."""
    opener = {"darwin": ["open"], "win32": ["explorer"]}.get(sys.platform, ["xdg-open"])
    try:
        subprocess.Popen([*opener, target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        pass  # no desktop handler (a bare X server): the log line names the folder or address
