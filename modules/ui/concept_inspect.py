"""What the concept editor shows, worked out in the background worker process (background.py), never on Tk's thread:

- the dataset check (`scripts/dataset.py check --json`, modules/dataset_tools/check.py): per concept the files that
  train with their windows and buckets, the files skipped and why, exactly as a training run would see them. It is
  run as a command, not imported: the window and the dataset tools are sibling layers (docs/architecture.md), and
  this is the same JSON the Tools tab reads;
- a few frames of each concept's first trained window, read by the data pipeline's own reader
  (modules/data/media/media_io.py), for the card's animated preview;
- saving an edited caption atomically (modules/util/atomic.py imports torch, which the window itself must not).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from modules.ui.run_process import REPO
from modules.util.errors import UserError

PREVIEW_FRAMES = 6
PREVIEW_SIDE = 112  # pixels, the longer side of a preview frame
CHECK_SCRIPT = REPO / "scripts" / "dataset.py"


class ConceptCheckFailed(UserError):
    """The check refused the settings (a missing folder, a model whose variant cannot be told): its own user-error
    message (found, expected, fix), shown above the cards."""


def inspect_concepts(values: dict) -> dict:
    """{"report": check's JSON, "previews": {concept index: [PIL images]}} for the form's `values`."""
    report = run_check(values)
    previews = {}
    for concept in report["concepts"]:
        index = int(concept["concept"].rsplit("[", 1)[1].rstrip("]"))  # "data.concepts[2]" -> 2
        if concept["files"]:
            previews[index] = preview_frames(concept["files"][0])
    return {"report": report, "previews": previews}


def run_check(values: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="concept-check-") as folder:
        config = Path(folder) / "config.json"
        config.write_text(json.dumps(values), encoding="utf-8")  # a scratch copy; the user's files are not touched
        result = subprocess.run(
            [sys.executable, str(CHECK_SCRIPT), "check", "--config", str(config), "--json"],
            cwd=REPO,  # relative concept paths mean what they mean for train.py, started here too
            capture_output=True,
            text=True,
            timeout=900,
        )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(" ")]
        message = lines[-1].removeprefix("error: ") if lines else f"ended with exit code {result.returncode}"
        raise ConceptCheckFailed(message)
    return json.loads(result.stdout)


def preview_frames(file_entry: dict) -> list:
    """PREVIEW_FRAMES frames spread over the file's first window: what its first training sample shows."""
    from PIL import Image

    from modules.data.media.media_io import read_frames

    window = file_entry["windows"][0]
    indices = window["source_indices"]
    spread = max(PREVIEW_FRAMES - 1, 1)
    picked = sorted({indices[round(i * (len(indices) - 1) / spread)] for i in range(PREVIEW_FRAMES)})
    frames = []
    for frame in read_frames(Path(file_entry["path"]), picked):
        image = Image.fromarray(frame)
        if window["flip"]:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        frames.append(image)
    return frames


def save_caption(media_path: str, text: str) -> str:
    """Write `text` to the caption file the data pipeline reads for `media_path`, atomically; returns its path."""
    from modules.data.sources.concepts import caption_file_of
    from modules.util.atomic import atomic_write

    target = caption_file_of(Path(media_path))
    atomic_write(target, lambda file: file.write(text.strip().encode("utf-8") + b"\n"))
    return str(target)
