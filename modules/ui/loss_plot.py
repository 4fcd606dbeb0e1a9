"""The live loss plot: one point per optimizer step, drawn on a canvas (no plotting library needed)."""

from __future__ import annotations

import tkinter as tk

import customtkinter as ctk


class LossPlot(ctk.CTkFrame):
    def __init__(self, parent, height: int = 150):
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.canvas = tk.Canvas(self, height=height, background="#1e1e1e", highlightthickness=0)
        self.canvas.pack(fill="both", expand=True, padx=2, pady=2)
        self.canvas.bind("<Configure>", lambda _e: self.redraw())

    def clear(self) -> None:
        self.points = []
        self.redraw()

    def add(self, step: int, loss: float) -> None:
        self.points.append((step, loss))
        self.redraw()

    def redraw(self) -> None:
        canvas = self.canvas
        canvas.delete("all")
        width, height = max(canvas.winfo_width(), 50), max(canvas.winfo_height(), 50)
        if not self.points:
            canvas.create_text(width / 2, height / 2, text="loss per step", fill="gray60")
            return
        steps = [s for s, _ in self.points]
        losses = [v for _, v in self.points]
        low, high = min(losses), max(losses)
        span_y = (high - low) or 1.0
        first, last = steps[0], steps[-1]
        span_x = (last - first) or 1
        pad = 28

        def xy(step: int, loss: float) -> tuple[float, float]:
            return (
                pad + (step - first) / span_x * (width - 2 * pad),
                height - pad / 2 - (loss - low) / span_y * (height - pad),
            )

        coords = [c for point in self.points for c in xy(*point)]
        if len(self.points) > 1:
            canvas.create_line(*coords, fill="#4da3ff", width=2)
        for x, y in (xy(*p) for p in self.points[-1:]):
            canvas.create_oval(x - 3, y - 3, x + 3, y + 3, fill="#4da3ff", outline="")
        canvas.create_text(4, 4, anchor="nw", text=f"{high:.4f}", fill="gray70")
        canvas.create_text(4, height - 4, anchor="sw", text=f"{low:.4f}", fill="gray70")
        canvas.create_text(width - 4, height - 4, anchor="se", text=f"step {last}", fill="gray70")
