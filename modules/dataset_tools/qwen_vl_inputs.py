"""A Qwen-VL checkpoint's generate() inputs, built from its own tokenizer, chat template and processor configs.

This stands in for transformers' `AutoProcessor`, whose Qwen-VL video processors need torchvision (no build for
this project's CPU/ROCm torch). It reads the same files a real checkpoint ships (preprocessor_config.json,
video_preprocessor_config.json where present, the chat template, the tokenizer), renders each conversation with
the checkpoint's chat template, expands every vision placeholder into as many pad tokens as the vision tower
returns embeddings, and adds the tensors the model family takes:

- Qwen2-VL / Qwen2.5-VL: `<|video_pad|>` repeated t*h*w/merge^2 times; Qwen2.5-VL also takes the seconds each
  temporal patch spans (`second_per_grid_ts`), its temporal position scale.
- Qwen3-VL: each temporal patch becomes `<{seconds:.1f} seconds><|vision_start|>pads<|vision_end|>` (the model
  reads time from these timestamps, the middle of the patch's first and last frame), replacing the template's
  `<|vision_start|><|video_pad|><|vision_end|>`.
- Every family: `mm_token_type_ids` (0 text, 1 image pad, 2 video pad), from which the model places its 3-D
  rotary positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from modules.dataset_tools.qwen_vl_patches import VisionGrid, patchify

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


@dataclass
class QwenVLInputs:
    tokenizer: object
    chat_template: str
    model_type: str
    image_grid: VisionGrid
    video_grid: VisionGrid

    def prompt(self, kind: str, instruction: str) -> str:
        """The rendered conversation for one file, with its vision placeholder not yet expanded."""
        conversation = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": instruction}]}]
        return self.tokenizer.apply_chat_template(
            conversation, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def build(self, items: list[dict], instruction: str) -> dict[str, torch.Tensor]:
        """`items`: {"kind": "video", "pixels": uint8 (n, H, W, 3), "fps": rate} or {"kind": "image", "pixels":
        uint8 (H, W, 3)}, in batch order. Rows are left-padded, so every row's generation continues at its end."""
        texts, image_rows, image_grids, video_rows, video_grids, seconds = [], [], [], [], [], []
        for item in items:
            text = self.prompt(item["kind"], instruction)
            if item["kind"] == "image":
                patches, thw = patchify(item["pixels"][None], self.image_grid)
                image_rows.append(patches)
                image_grids.append(thw)
                text = self._expand(text, IMAGE_PAD, IMAGE_PAD * self._tokens(thw, self.image_grid))
            else:
                patches, thw = patchify(item["pixels"], self.video_grid)
                video_rows.append(patches)
                video_grids.append(thw)
                seconds.append(self.video_grid.temporal_patch_size / item["fps"])
                text = self._expand_video(text, thw, len(item["pixels"]), item["fps"])
            texts.append(text)
        self.tokenizer.padding_side = "left"
        batch = dict(self.tokenizer(texts, padding=True, return_tensors="pt"))
        ids = batch["input_ids"]
        image_id, video_id = self.tokenizer.convert_tokens_to_ids([IMAGE_PAD, VIDEO_PAD])
        batch["mm_token_type_ids"] = (ids == image_id).long() + 2 * (ids == video_id).long()
        if image_rows:
            batch["pixel_values"] = torch.cat(image_rows)
            batch["image_grid_thw"] = torch.tensor(image_grids)
        if video_rows:
            batch["pixel_values_videos"] = torch.cat(video_rows)
            batch["video_grid_thw"] = torch.tensor(video_grids)
            if self.model_type == "qwen2_5_vl":
                batch["second_per_grid_ts"] = torch.tensor(seconds)
        return batch

    def decode(self, tokens: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    # ---- placeholders ---------------------------------------------------------------------------
    @staticmethod
    def _tokens(thw: tuple[int, int, int], grid: VisionGrid) -> int:
        t, h, w = thw
        return t * h * w // grid.merge_size**2

    @staticmethod
    def _expand(text: str, placeholder: str, replacement: str) -> str:
        if placeholder not in text:
            raise ValueError(f"the chat template wrote no {placeholder} for the file")
        return text.replace(placeholder, replacement, 1)

    def _expand_video(self, text: str, thw: tuple[int, int, int], frames: int, fps: float) -> str:
        grid = self.video_grid
        if self.model_type != "qwen3_vl":
            return self._expand(text, VIDEO_PAD, VIDEO_PAD * self._tokens(thw, grid))
        t, h, w = thw
        per_frame = VIDEO_PAD * (h * w // grid.merge_size**2)
        times = [min(i, frames - 1) / fps for i in range(t * grid.temporal_patch_size)]
        step = grid.temporal_patch_size
        stamps = [(times[i] + times[i + step - 1]) / 2 for i in range(0, len(times), step)]
        expanded = "".join(f"<{stamp:.1f} seconds>{VISION_START}{per_frame}{VISION_END}" for stamp in stamps)
        wrapped = f"{VISION_START}{VIDEO_PAD}{VISION_END}"
        return self._expand(text, wrapped if wrapped in text else VIDEO_PAD, expanded)


def read_chat_template(files: dict[str, Path | None], tokenizer) -> str | None:
    """The checkpoint's chat template: chat_template.jinja, else chat_template.json's, else the tokenizer's."""
    if files.get("chat_template.jinja"):
        return Path(files["chat_template.jinja"]).read_text(encoding="utf-8")
    if files.get("chat_template.json"):
        return json.loads(Path(files["chat_template.json"]).read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)
