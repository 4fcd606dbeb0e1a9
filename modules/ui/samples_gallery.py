"""The samples gallery (on the Sampling tab): the run's samples in `<workspace>/samples/` (scheduled ones and
Sample now's `request-step*.mp4`), newest first, each with its step and prompt from its JSON sidecar; the chosen
one plays in the window, and "Open video" hands it to the desktop's player.

Decoding a video takes from tens of milliseconds to seconds, so it runs on a thread that only decodes files
(video_frames.py through off_thread.py, no Tk); the frames come back to Tk's thread, which shows them one by
one with `after()` at the video's frame rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import customtkinter as ctk

from modules.ui.off_thread import OffThread
from modules.ui.run_panel import open_externally
from modules.ui.video_frames import decode_frames

VIDEO_SUFFIXES = (".mp4", ".webm")
PLAYER_SIDE = 320
LISTED = 60  # rows shown (the newest)
REFRESH_MS = 2000
STEP_IN_NAME = re.compile(r"step(\d+)")


@dataclass(frozen=True)
class SampleEntry:
    path: Path
    mtime: float
    step: int | None
    prompt: str

    def title(self) -> str:
        step = f"step {self.step}" if self.step is not None else "no step"
        prompt = self.prompt if len(self.prompt) <= 60 else self.prompt[:57] + "..."
        return f"{step}  ·  {self.path.name}  ·  {prompt}"


def _sidecar(path: Path) -> Path:
    # modules/util/sample_export.py's sidecar_path (that module imports torch, which the window must not wait for)
    return path.with_suffix(".json") if path.suffix in VIDEO_SUFFIXES else path.with_name(path.name + ".json")


def list_samples(folder: Path) -> list[SampleEntry]:
    """The samples in `folder`, newest first: videos and PNG-frame folders, with their sidecar's step and prompt."""
    try:
        paths = [p for p in folder.iterdir() if p.suffix in VIDEO_SUFFIXES or (p.is_dir() and _sidecar(p).exists())]
    except OSError:
        return []
    entries = []
    for path in paths:
        try:
            record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        record = record if isinstance(record, dict) else {}
        step = record.get("step")
        if not isinstance(step, int):
            found = STEP_IN_NAME.search(path.name)
            step = int(found.group(1)) if found else None
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        entries.append(SampleEntry(path, mtime, step, str(record.get("prompt") or "")))
    return sorted(entries, key=lambda e: (e.mtime, e.step or 0), reverse=True)


class SamplesGallery(ctk.CTkFrame):
    def __init__(self, parent, samples_folder: Callable[[], Path | None]):
        super().__init__(parent)
        self.samples_folder = samples_folder
        self.entries: list[SampleEntry] = []
        self.listed_key: tuple = ()
        self.playing: SampleEntry | None = None
        self.frames: list = []
        self.images: dict[int, ctk.CTkImage] = {}
        self.index = 0
        self.frame_ms = 62
        self.shown_frames = 0  # frames drawn since the video started (tests check that it plays)
        self.paused = False
        self.decoder = OffThread(self, self._decoded)
        self.play_job = None

        header = ctk.CTkFrame(self, fg_color="transparent")
        header.pack(fill="x", padx=6, pady=(6, 2))
        ctk.CTkLabel(header, text="Samples", font=ctk.CTkFont(size=14, weight="bold")).pack(side="left")
        ctk.CTkButton(header, text="Refresh", width=80, command=self.refresh).pack(side="right")
        self.folder_label = ctk.CTkLabel(header, text="", anchor="w")
        self.folder_label.pack(side="left", padx=8)

        player = ctk.CTkFrame(self, fg_color="transparent")
        player.pack(fill="x", padx=6)
        self.screen = ctk.CTkLabel(player, text="no sample chosen", width=PLAYER_SIDE, height=PLAYER_SIDE // 2)
        self.screen.pack(side="left", padx=(0, 8))
        controls = ctk.CTkFrame(player, fg_color="transparent")
        controls.pack(side="left", fill="both", expand=True)
        self.caption = ctk.CTkLabel(controls, text="", anchor="w", justify="left", wraplength=360)
        self.caption.pack(fill="x")
        self.pause_button = ctk.CTkButton(controls, text="Pause", width=90, command=self.toggle_pause, state="disabled")
        self.pause_button.pack(anchor="w", pady=2)
        self.open_button = ctk.CTkButton(controls, text="Open video", width=90, command=self.open, state="disabled")
        self.open_button.pack(anchor="w", pady=2)
        self.list_frame = ctk.CTkFrame(self, fg_color="transparent")
        self.list_frame.pack(fill="x", padx=6, pady=(4, 6))
        self.rows: list[ctk.CTkButton] = []
        self.after(REFRESH_MS, self._auto_refresh)

    # ---- the list -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        folder = self.samples_folder()
        self.folder_label.configure(text=str(folder) if folder else "(the settings have a problem: no workspace)")
        entries = list_samples(folder) if folder else []
        key = tuple((e.path, e.mtime) for e in entries)
        if key == self.listed_key:
            return
        self.listed_key, self.entries = key, entries
        for row in self.rows:
            row.destroy()
        self.rows = []
        for entry in entries[:LISTED]:
            row = ctk.CTkButton(
                self.list_frame,
                text=entry.title(),
                anchor="w",
                fg_color="transparent",
                text_color=("gray10", "gray90"),
                hover_color=("gray80", "gray25"),
                command=lambda e=entry: self.play(e),
            )
            row.pack(fill="x")
            self.rows.append(row)
        if not entries:
            self.rows.append(ctk.CTkLabel(self.list_frame, text="no samples yet", anchor="w"))
            self.rows[-1].pack(fill="x")

    def _auto_refresh(self) -> None:
        if self.winfo_ismapped():
            self.refresh()
        self.after(REFRESH_MS, self._auto_refresh)

    # ---- playing ------------------------------------------------------------------------------------
    def play(self, entry: SampleEntry) -> None:
        """Decode `entry` on the decoding thread; it plays once its frames arrive."""
        self.playing, self.frames, self.images, self.index, self.shown_frames = entry, [], {}, 0, 0
        self.caption.configure(text=f"{entry.title()}\ndecoding...")
        self.open_button.configure(state="normal")
        self.decoder.request(decode_frames, entry.path, PLAYER_SIDE)

    def _decoded(self, result) -> None:
        entry = self.playing
        if isinstance(result, Exception) or not result[0]:
            self.caption.configure(
                text=f"{entry.title()}\ncannot play: {result if isinstance(result, Exception) else 'no frames'}"
            )
            return
        frames, fps = result
        self.frames, self.frame_ms = frames, max(20, round(1000 / (fps or 16)))
        width, height = frames[0].size
        self.caption.configure(text=f"{entry.title()}\n{len(frames)} frames, {width}x{height} shown, {fps:g} fps")
        self.pause_button.configure(state="normal", text="Pause")
        self.paused = False
        if self.play_job is None:
            self._next_frame()

    def _next_frame(self) -> None:
        self.play_job = None
        if not self.frames or self.paused:
            return
        index = self.index % len(self.frames)
        if index not in self.images:
            frame = self.frames[index]
            self.images[index] = ctk.CTkImage(light_image=frame, dark_image=frame, size=frame.size)
        self.screen.configure(image=self.images[index], text="")
        self.index, self.shown_frames = index + 1, self.shown_frames + 1
        self.play_job = self.after(self.frame_ms, self._next_frame)

    @property
    def current_frame(self):
        """The frame on screen (a PIL image), or None."""
        return self.frames[(self.index - 1) % len(self.frames)] if self.frames and self.shown_frames else None

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.pause_button.configure(text="Play" if self.paused else "Pause")
        if not self.paused and self.play_job is None:
            self._next_frame()

    def open(self) -> None:
        if self.playing is not None:
            open_externally(str(self.playing.path))
