"""The latest sample: a few of its frames in the window (decoded on a thread of their own) and a button that
opens the video file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import customtkinter as ctk
from PIL import Image

from modules.ui.off_thread import OffThread
from modules.ui.video_frames import decode_frames

FRAMES_SHOWN = 4
THUMB = 96


def read_frames(path: Path, count: int = FRAMES_SHOWN) -> list[Image.Image]:
    """`count` frames spread over the video (or over a folder of PNG frames)."""
    images, _ = decode_frames(path)
    if not images:
        return []
    picks = [round(i * (len(images) - 1) / max(count - 1, 1)) for i in range(min(count, len(images)))]
    return [images[i] for i in picks]


class SampleView(ctk.CTkFrame):
    def __init__(self, parent):
        super().__init__(parent)
        self.path: Path | None = None
        self.frames: list[Image.Image] = []
        self.decoder = OffThread(self, self._decoded)
        self.caption = ctk.CTkLabel(self, text="no sample yet", anchor="w")
        self.caption.grid(row=0, column=0, columnspan=FRAMES_SHOWN, sticky="w", padx=4)
        self.open_button = ctk.CTkButton(self, text="Open video", width=100, command=self.open, state="disabled")
        self.open_button.grid(row=0, column=FRAMES_SHOWN, padx=4, pady=2)
        self.images = [ctk.CTkLabel(self, text="", width=THUMB, height=THUMB) for _ in range(FRAMES_SHOWN)]
        for column, label in enumerate(self.images):
            label.grid(row=1, column=column, padx=2, pady=2)

    def clear(self) -> None:
        self.decoder.cancel()
        self.path, self.frames = None, []
        for label in self.images:
            label.configure(image=None)
        self.caption.configure(text="no sample yet")
        self.open_button.configure(state="disabled")

    def show(self, path: Path) -> None:
        """Show `path`'s frames once a thread has decoded them (a long sample takes seconds to decode, which
        Tk's thread must not wait for); a newer sample supersedes one still decoding."""
        self.path = Path(path)
        self.caption.configure(text=f"latest sample: {self.path.name} (decoding...)")
        self.open_button.configure(state="normal")
        self.decoder.request(read_frames, self.path)

    def _decoded(self, frames) -> None:
        if isinstance(frames, Exception):
            self.frames = []
            self.caption.configure(text=f"{self.path.name}: cannot show ({frames})")
            return
        self.frames = frames
        for label, frame in zip(self.images, self.frames + [None] * FRAMES_SHOWN):
            if frame is None:
                label.configure(image=None)
                continue
            scale = THUMB / max(frame.size)
            size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
            label.configure(image=ctk.CTkImage(light_image=frame, size=size))
        self.caption.configure(text=f"latest sample: {self.path.name}")

    def open(self) -> None:
        if self.path is None:
            return
        try:
            if sys.platform == "win32":
                os.startfile(self.path)  # noqa: S606
            else:
                subprocess.Popen(["open" if sys.platform == "darwin" else "xdg-open", str(self.path)])
        except OSError as error:
            self.caption.configure(text=f"cannot open {self.path} ({error}); open it with a video player")
