"""The frames a captioning model sees: the clip's first training window, read and bucketed as the trainer reads it.

The pipeline's own stages plan the window (probe -> windows at the trained fps -> bucket) and its reader
decodes it (media_io.read_frames: rotation, pixel aspect, edit lists, variable rates as shown), resized and
centre-cropped into the bucket as the cache does (buckets.resize_and_crop). So the caption describes what the
model will be trained on, not frames a different reader or crop would give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from modules.data.clips.buckets import resize_and_crop
from modules.data.flow.pipeline import Pipeline
from modules.data.flow.report import DataReport
from modules.data.flow.stages import AssignBuckets, PlanWindows
from modules.data.flow.video_dataset import DatasetSettings
from modules.data.media import media_io


def trainer_window(path: Path, settings: DatasetSettings) -> dict | None:
    """The pipeline item of the file's first window (None when the pipeline skips the file)."""
    s = settings
    stages = [
        PlanWindows(DataReport(), s.target_fps, s.window_frames, s.extraction_mode, 1, s.stride, s.min_frames),
        AssignBuckets(s.target_area, s.pixel_multiple),
    ]
    # The probe directly rather than the ProbeMedia stage, whose progress bar would show once per file.
    info = media_io.probe(Path(path), s.backend)
    items = Pipeline(stages, inputs=("path", "info")).run([{"path": Path(path), "info": info}])
    return items[0] if items else None


def caption_frames(path: Path, settings: DatasetSettings, sample_frames: int) -> tuple[np.ndarray, float, list[int]]:
    """uint8 (count, height, width, 3) frames of the first window, `sample_frames` of them spread evenly from its
    first to its last, the rate they sample (frames per second) and their source frame indices."""
    item = trainer_window(path, settings)  # a MediaError when unreadable
    if item is None:
        raise media_io.MediaError(path, "too short for the data settings: the data pipeline would skip it")
    indices = list(item["source_indices"])
    picks = sorted({round(i) for i in np.linspace(0, len(indices) - 1, min(sample_frames, len(indices)))})
    chosen = [indices[p] for p in picks]
    frames = media_io.read_frames(path, chosen, settings.backend, item["info"])
    bucket = item["bucket"]
    pixels = resize_and_crop(frames, bucket.width, bucket.height)  # (3, count, H, W) in [-1, 1]
    as_uint8 = ((pixels + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
    span = (picks[-1] - picks[0]) / settings.target_fps if len(picks) > 1 else 0
    rate = (len(picks) - 1) / span if span else settings.target_fps
    return as_uint8, rate, chosen
