"""The Tools tab: each tool of tool_specs.py as a small form (its arguments with the pickers of their kind), the
command line it runs (copyable, for reuse in a shell), Run / Stop, a progress bar read from the tool's own
output (tool_progress.py) and that output. Tools run as child processes (tool_process.py) that the window
follows with `after()`, so the window stays responsive while they work.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

import customtkinter as ctk

from modules.config.loading import save_config
from modules.ui.field_widgets import ERROR_COLOR, FieldWidget, make_field_widget
from modules.ui.tool_process import ToolProcess
from modules.ui.tool_progress import last_progress, segments
from modules.ui.tool_specs import TOOLS, Tool, ToolArg, tool_named
from modules.ui.tooltip import Tooltip

POLL_MS = 100
OUTPUT_LINES = 3000  # the output box keeps this many lines of the tail


def shown_command(command: list[str]) -> str:
    """The command as a user types it in the repository's folder (`python`, not this interpreter's path)."""
    return shlex.join(["python", *command[1:]])


class ToolForm(ctk.CTkFrame):
    def __init__(self, parent, tool: Tool, current_config: Callable[[], object | None], work_dir: Callable[[], Path]):
        super().__init__(parent)
        self.tool, self.current_config, self.work_dir = tool, current_config, work_dir
        self.process: ToolProcess | None = None
        self.process_log: Path | None = None  # the last run's output file
        self.partial = ""  # output after the last newline: the line shown last, redrawn as it grows
        self.last_line = "no output"
        self.exit_code: int | None = None
        self.ready = False  # setting the defaults below calls changed() before the command line exists
        self.grid_columnconfigure(1, weight=1)
        ctk.CTkLabel(self, text=tool.about, anchor="w", justify="left", wraplength=620).grid(
            row=0, column=0, columnspan=3, sticky="w", padx=8, pady=(6, 2)
        )
        fields = ctk.CTkFrame(self, fg_color="transparent")
        fields.grid(row=1, column=0, columnspan=3, sticky="ew")
        fields.grid_columnconfigure(1, weight=1)
        self.widgets: dict[str, FieldWidget] = {}
        self.window_buttons: dict[str, ctk.CTkButton] = {}
        for row, arg in enumerate(tool.args):
            widget = make_field_widget(fields, arg.spec, row, self.changed)
            widget.set(arg.spec.default)
            self.widgets[arg.spec.name] = widget
            if arg.window_config:
                button = ctk.CTkButton(
                    fields, text="This window's settings", width=150, command=lambda a=arg: self.use_window(a)
                )
                button.grid(row=2 * row, column=2, padx=(0, 8))
                self.window_buttons[arg.spec.name] = button
                Tooltip(button, "save the settings of this window to a file and use it here")

        line = ctk.CTkFrame(self, fg_color="transparent")
        line.grid(row=2, column=0, columnspan=3, sticky="ew", padx=8, pady=(6, 2))
        line.grid_columnconfigure(1, weight=1)
        ctk.CTkLabel(line, text="Command").grid(row=0, column=0, padx=(0, 8))
        self.command_entry = ctk.CTkEntry(line)
        self.command_entry.grid(row=0, column=1, sticky="ew")
        ctk.CTkButton(line, text="Copy", width=60, command=self.copy_command).grid(row=0, column=2, padx=(4, 0))

        buttons = ctk.CTkFrame(self, fg_color="transparent")
        buttons.grid(row=3, column=0, columnspan=3, sticky="ew", padx=8, pady=4)
        self.run_button = ctk.CTkButton(buttons, text="Run", width=90, command=self.run)
        self.run_button.pack(side="left")
        self.stop_button = ctk.CTkButton(buttons, text="Stop", width=90, command=self.stop, state="disabled")
        self.stop_button.pack(side="left", padx=6)
        self.status = ctk.CTkLabel(buttons, text="", anchor="w", justify="left", wraplength=460)
        self.status.pack(side="left", fill="x", expand=True)
        self.progress_bar = ctk.CTkProgressBar(self)
        self.progress_bar.set(0)
        self.progress_bar.grid(row=4, column=0, columnspan=3, sticky="ew", padx=8)
        self.progress_label = ctk.CTkLabel(self, text="", anchor="w")
        self.progress_label.grid(row=5, column=0, columnspan=3, sticky="w", padx=8)
        self.output = ctk.CTkTextbox(self, height=220, wrap="none", font=ctk.CTkFont(family="monospace", size=11))
        self.output.grid(row=6, column=0, columnspan=3, sticky="nsew", padx=8, pady=(2, 8))
        self.ready = True
        self.changed()

    # ---- the form -----------------------------------------------------------------------------------
    def values(self) -> dict:
        return {name: widget.get() for name, widget in self.widgets.items()}

    def problems(self) -> list[str]:
        """What keeps Run disabled: required arguments left empty, numbers that are not numbers."""
        values = self.values()
        found = [f"{label} is required" for label in self.tool.missing(values)]
        for arg in self.tool.args:
            message = _number_problem(arg, values.get(arg.spec.name))
            if self.widgets[arg.spec.name].error_text != message:  # a redraw only when the message changes
                self.widgets[arg.spec.name].mark(message)
            if message:
                found.append(f"{arg.spec.label}: {message}")
        return found

    def changed(self) -> None:
        if not self.ready:
            return
        command = shown_command(self.tool.command(self.values()))
        if self.command_entry.get() != command:
            self.command_entry.delete(0, "end")
            self.command_entry.insert(0, command)
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.process is not None
        problems = self.problems()
        self.run_button.configure(state="disabled" if running or problems else "normal")
        self.stop_button.configure(state="normal" if running else "disabled")
        if not running and problems:
            self.status.configure(text="; ".join(problems), text_color=ERROR_COLOR)
        elif not running and self.exit_code is None:
            self.status.configure(text="ready", text_color=("gray10", "gray90"))

    def use_window(self, arg: ToolArg) -> None:
        """Save this window's settings (when valid) to a file and put its path into `arg`."""
        config = self.current_config()
        if config is None:
            self.status.configure(text="the window's settings have a problem; fix it first", text_color=ERROR_COLOR)
            return
        path = self.work_dir() / "window_config.json"
        save_config(config, path)
        self.widgets[arg.spec.name].set(str(path))

    def copy_command(self) -> None:
        self.clipboard_clear()
        self.clipboard_append(self.command_entry.get())

    # ---- running ------------------------------------------------------------------------------------
    def run(self) -> None:
        if self.process is not None or self.problems():
            return
        command = self.tool.command(self.values())
        log = self.work_dir() / f"{self.tool.script.removesuffix('.py')}-{'-'.join(self.tool.subcommand)}.log"
        self.partial, self.last_line, self.exit_code = "", "no output", None
        self.output.delete("1.0", "end")
        self.progress_bar.set(0)
        self.progress_label.configure(text="")
        self.process = ToolProcess(command, log)
        self.process_log = log
        self.status.configure(text=f"running (PID {self.process.popen.pid})", text_color=("gray10", "gray90"))
        self._update_buttons()
        self.after(POLL_MS, self.poll)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.stop_button.configure(text="Kill" if self.process.stops_sent == 1 else "Stop")
            self.status.configure(text="stopping... (press Kill to end it at once)")

    def poll(self) -> None:
        process = self.process
        if process is None:
            return
        code = process.finished()  # read before the output, so the output read next is complete
        new = process.new_output()
        if new:
            progress = self._show_output(new)
            if progress is not None:
                self.progress_bar.set(progress.fraction)
                self.progress_label.configure(text=progress.text())
        if code is None:
            self.after(POLL_MS, self.poll)
            return
        self.process, self.exit_code = None, code
        self.stop_button.configure(text="Stop")
        if code == 0:
            self.progress_bar.set(1)
            self.status.configure(text="done", text_color=("#2e7d32", "#66bb6a"))
        else:
            kind = "stopped" if process.stops_sent else "failed"
            self.status.configure(text=f"{kind} (exit {code}): {self.last_line}", text_color=ERROR_COLOR)
        self._update_buttons()

    def _show_output(self, new: str):
        """Add `new` output to the box (only what changed: the last line is redrawn, the new lines added; a
        line redrawn with carriage returns shows as last drawn); returns the latest progress bar in it."""
        text = (self.partial + new).replace("\r\n", "\n")
        *complete, self.partial = text.split("\n")
        shown = segments("\n".join([*complete, self.partial]))
        self.output.delete("end-1c linestart", "end-1c")  # the previous last line, now complete or redrawn
        self.output.insert("end", "\n".join(shown))
        self.last_line = next((line for line in reversed(shown) if line.strip()), self.last_line)
        lines = int(self.output.index("end-1c").split(".")[0])
        if lines > OUTPUT_LINES:
            self.output.delete("1.0", f"{lines - OUTPUT_LINES}.0")
        self.output.see("end")
        return last_progress(text)


def _number_problem(arg: ToolArg, value) -> str | None:
    kind = arg.spec.kind
    if kind in (int, float) and value not in (None, ""):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and isinstance(value, float)):
            return f"expected {'a whole number' if kind is int else 'a number'}, got {value!r}"
    return None


class ToolsTab(ctk.CTkFrame):
    """A tool chooser and the chosen tool's form; forms are built when first chosen (widgets are slow to make)."""

    def __init__(self, parent, current_config: Callable[[], object | None]):
        super().__init__(parent, fg_color="transparent")
        self.current_config = current_config
        self.work_folder: Path | None = None
        self.forms: dict[str, ToolForm] = {}
        top = ctk.CTkFrame(self, fg_color="transparent")
        top.pack(fill="x", padx=4, pady=4)
        ctk.CTkLabel(top, text="Tool").pack(side="left", padx=(4, 8))
        titles = [tool.title for tool in TOOLS]
        self.chooser = ctk.CTkOptionMenu(top, values=titles, command=self.select, width=220)
        self.chooser.pack(side="left")
        self.selected: str | None = None
        self.bind("<Map>", lambda _: self.selected is None and self.select(titles[0]), add="+")

    def work_dir(self) -> Path:
        """A folder of this window's for the tools' logs and the saved window settings (made on first use)."""
        if self.work_folder is None:
            self.work_folder = Path(tempfile.mkdtemp(prefix="wan-trainer-tools-"))
        return self.work_folder

    def select(self, title: str) -> ToolForm:
        if self.selected is not None:
            self.forms[self.selected].pack_forget()
        if title not in self.forms:
            self.forms[title] = ToolForm(self, tool_named(title), self.current_config, self.work_dir)
        self.forms[title].pack(fill="both", expand=True, padx=4, pady=4)
        self.chooser.set(title)
        self.selected = title
        return self.forms[title]
