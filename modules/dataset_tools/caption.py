"""`scripts/dataset.py caption`: a caption .txt beside each video and image, written by a Qwen-VL model.

Files that already have a caption are kept unless --overwrite. Each caption is written atomically right after
its batch, so a run killed at any moment leaves whole captions or none, and the next run does only the rest.
Greedy decoding: the same file gives the same caption alone or in a batch (rows are left-padded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from modules.data.flow.report import DataReport
from modules.data.media import media_io
from modules.data.media.folder_walk import media_files
from modules.dataset_tools.caption_frames import caption_frames
from modules.dataset_tools.data_settings import LabelledConcept
from modules.util.atomic import atomic_write

DEFAULT_INSTRUCTION = (
    "Describe this video in detail in one paragraph: the subjects and their appearance, what happens and how "
    "things move, the setting, the camera (framing, angle, movement), the lighting and the visual style. "
    "Describe only what is visible."
)


@dataclass(frozen=True)
class CaptionSettings:
    model: str
    allow_download: bool = False
    instruction: str | None = None
    prefix: str = ""
    suffix: str = ""
    max_new_tokens: int = 256
    batch_size: int = 1
    sample_frames: int = 16
    quantize: str = "none"
    device: str = "auto"
    dtype: str = "auto"
    overwrite: bool = False


def files_to_caption(plans: list[LabelledConcept]) -> list[tuple[Path, object]]:
    """(media file, its concept's data settings) for every file of the concepts, in path order."""
    found = []
    for plan in plans:
        folder = Path(plan.concept.path)
        if folder.is_file():
            found.append((folder, plan.settings))
            continue
        if not folder.is_dir():
            raise media_io.MediaError(folder, "no such file or folder", "pass folders or files of videos/images")
        found += [(p, plan.settings) for p in media_files(folder, plan.concept.include_subdirectories, DataReport())]
    return found


def has_caption(path: Path) -> bool:
    caption = path.with_suffix(".txt")
    return caption.is_file() and bool(caption.read_text(encoding="utf-8-sig", errors="replace").strip())


def caption_files(files: list[tuple[Path, object]], settings: CaptionSettings) -> list[dict]:
    results = {path: "kept (has a caption)" for path, _ in files if has_caption(path) and not settings.overwrite}
    todo = [(path, data) for path, data in files if path not in results]
    if todo:
        from modules.dataset_tools.caption_model import load_captioner

        model, inputs, device = load_captioner(
            settings.model, settings.allow_download, settings.quantize, settings.device, settings.dtype
        )
        with tqdm(total=len(todo), desc="captioning", unit="file") as bar:
            for start in range(0, len(todo), max(settings.batch_size, 1)):
                batch = todo[start : start + max(settings.batch_size, 1)]
                ready, items = [], []
                for path, data in batch:
                    try:
                        items.append(model_input(path, data, settings))
                        ready.append(path)
                    except media_io.MediaError as error:
                        results[path] = f"skipped ({error.reason})"
                for path, text in zip(ready, generate_captions(model, inputs, device, items, settings)):
                    caption = f"{settings.prefix}{text}{settings.suffix}".strip()
                    atomic_write(path.with_suffix(".txt"), lambda file, c=caption: file.write(c.encode("utf-8")))
                    results[path] = "written"
                bar.update(len(batch))
    return [{"path": str(path), "status": results[path]} for path, _ in files]


def model_input(path: Path, data, settings: CaptionSettings) -> dict:
    """One file as the processor takes it: a video's trainer-read frames, or an image."""
    frames, rate, _ = caption_frames(path, data, settings.sample_frames)
    if media_io.is_image(path):
        return {"kind": "image", "pixels": frames[0]}
    return {"kind": "video", "pixels": frames, "fps": rate}


def generate_captions(model, inputs, device, items: list[dict], settings: CaptionSettings) -> list[str]:
    """`inputs`: the checkpoint's QwenVLInputs (caption_model.load_inputs)."""
    if not items:
        return []
    batch = inputs.build(items, settings.instruction or DEFAULT_INSTRUCTION)
    batch = {name: value.to(device) for name, value in batch.items()}
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=settings.max_new_tokens, do_sample=False)
    return inputs.decode(out[:, batch["input_ids"].shape[1] :])
