"""A help text that appears while the pointer rests on a widget (the field's `help` metadata)."""

from __future__ import annotations

import tkinter as tk


class Tooltip:
    def __init__(self, widget, text: str, delay_ms: int = 500):
        self.widget, self.text, self.delay_ms = widget, text, delay_ms
        self.window: tk.Toplevel | None = None
        self.pending = None
        widget.bind("<Enter>", self._schedule, add="+")
        widget.bind("<Leave>", self._hide, add="+")

    def _schedule(self, _event=None) -> None:
        self.pending = self.widget.after(self.delay_ms, self.show)

    def show(self) -> None:
        if self.window is not None or not self.text:
            return
        x = self.widget.winfo_rootx() + 10
        y = self.widget.winfo_rooty() + self.widget.winfo_height() + 4
        self.window = tk.Toplevel(self.widget)
        self.window.wm_overrideredirect(True)
        self.window.wm_geometry(f"+{x}+{y}")
        tk.Label(
            self.window,
            text=self.text,
            justify="left",
            wraplength=480,
            background="#ffffe0",
            relief="solid",
            borderwidth=1,
        ).pack(ipadx=4, ipady=2)

    def _hide(self, _event=None) -> None:
        if self.pending is not None:
            self.widget.after_cancel(self.pending)
            self.pending = None
        if self.window is not None:
            self.window.destroy()
            self.window = None
