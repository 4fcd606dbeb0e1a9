"""The captioner's model inputs, built without torchvision (modules/dataset_tools/qwen_vl_*.py), checked against
transformers' own PIL image processor and against the layout's inverse: pixels, patch order, token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.dataset_tools.qwen_vl_inputs import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START, QwenVLInputs
from modules.dataset_tools.qwen_vl_patches import VisionGrid, fitted_size, patchify, unpatchify

SIZE = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64}


def random_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def reference_image_processor(**settings):
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size=SIZE, **settings)


@pytest.mark.parametrize("settings", [{}, {"patch_size": 16, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}])
def test_an_image_gives_what_transformers_image_processor_gives(settings):
    processor = reference_image_processor(**settings)
    grid = VisionGrid.from_config(processor.to_dict())
    image = random_frames(1, 70, 101)  # not a multiple of the merged patch: resized
    expected = processor(images=[image[0]], return_tensors="pt")
    patches, thw = patchify(image, grid)
    assert list(thw) == expected["image_grid_thw"][0].tolist()
    assert (thw[1] * grid.patch_size, thw[2] * grid.patch_size) != (70, 101)  # so the pixels were resized
    torch.testing.assert_close(patches, expected["pixel_values"], atol=2e-6, rtol=0)


def test_a_still_pair_of_frames_is_the_image_and_a_clip_round_trips_in_order():
    grid = VisionGrid.from_config(reference_image_processor().to_dict())
    still = random_frames(1, 84, 112, seed=1)
    image_patches, image_thw = patchify(still, grid)
    video_patches, video_thw = patchify(np.repeat(still, 2, axis=0), grid)
    assert image_thw == video_thw and torch.equal(image_patches, video_patches)

    clip = random_frames(5, 84, 112, seed=2)  # multiples of 28: no resize; odd count: last frame repeated
    patches, thw = patchify(clip, grid)
    assert thw == (3, 84 // 14, 112 // 14)
    mean = torch.tensor(grid.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(grid.image_std).view(1, 3, 1, 1)
    back = unpatchify(patches, thw, grid) * std + mean  # to [0, 1]
    expected = np.concatenate([clip, clip[-1:]])
    assert np.array_equal((back * 255).round().byte().permute(0, 2, 3, 1).numpy(), expected)


def test_the_pixel_budget_is_per_frame_or_per_clip():
    per_frame = VisionGrid(min_pixels=16 * 16, max_pixels=16 * 16 * 48, patch_size=8)
    per_clip = VisionGrid(min_pixels=16 * 16, max_pixels=16 * 16 * 48, patch_size=8, budget_per_clip=True)
    assert fitted_size(96, 128, 8, per_frame) == (96, 128)  # 48 merged patches: fits one frame's budget
    height, width = fitted_size(96, 128, 8, per_clip)
    assert height * width * 8 <= 16 * 16 * 48 and height % 16 == 0 and width % 16 == 0


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from tiny_qwen_vl import CHAT_TEMPLATE, write_tokenizer
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder), CHAT_TEMPLATE


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl"])
def test_placeholders_expand_to_one_pad_per_merged_patch(tokenizer, model_type):
    tok, template = tokenizer
    grid = VisionGrid(patch_size=8, min_pixels=16 * 16, max_pixels=16 * 16 * 48)
    inputs = QwenVLInputs(tok, template, model_type, grid, grid)
    clip, image = random_frames(5, 32, 48, seed=3), random_frames(1, 48, 32, seed=4)[0]
    batch = inputs.build([{"kind": "video", "pixels": clip, "fps": 4.0}, {"kind": "image", "pixels": image}], "hi")
    video_id, image_id = tok.convert_tokens_to_ids([VIDEO_PAD, IMAGE_PAD])
    assert batch["video_grid_thw"].tolist() == [[3, 4, 6]] and batch["image_grid_thw"].tolist() == [[1, 6, 4]]
    ids = batch["input_ids"]
    assert int((ids[0] == video_id).sum()) == 3 * 4 * 6 // 4 and int((ids[1] == image_id).sum()) == 6 * 4 // 4
    assert torch.equal(batch["mm_token_type_ids"], (ids == image_id).long() + 2 * (ids == video_id).long())
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]  # left-padded: every row ends with its prompt
    text = tok.decode(ids[0][batch["attention_mask"][0] == 1])
    if model_type == "qwen3_vl":  # a timestamp before each temporal patch: frames 0-1, 2-3, 4-(4) at 4 fps
        assert [f"<{s} seconds>{VISION_START}" in text for s in ("0.1", "0.6", "1.0")] == [True] * 3
        assert text.count(VISION_START) == 3 and "second_per_grid_ts" not in batch
    else:
        assert text.count(VISION_START) == 1 and batch["second_per_grid_ts"].tolist() == [0.5]


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_vl"])
def test_the_inputs_equal_transformers_processors_where_torchvision_is_installed(tokenizer, model_type):
    """The real processors need torchvision (not installable beside this project's CPU torch: skipped in CI). Run
    once by hand with torchvision's Python code on PYTHONPATH; docs/dataset_tools.md gives the result."""
    pytest.importorskip("torchvision", reason="transformers' Qwen-VL video processors need torchvision")
    import transformers
    from transformers.video_utils import VideoMetadata

    tok, template = tokenizer
    size = {"shortest_edge": 16 * 16, "longest_edge": 16 * 16 * 48 * (4 if model_type == "qwen3_vl" else 1)}
    mean = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if model_type == "qwen3_vl" else {}
    image = transformers.Qwen2VLImageProcessorPil(size=size, patch_size=8, **mean)
    if model_type == "qwen3_vl":
        video = transformers.Qwen3VLVideoProcessor(size=size, patch_size=8, **mean)
        processor = transformers.Qwen3VLProcessor(image, tok, video, chat_template=template)
    else:
        video = transformers.Qwen2VLVideoProcessor(size=size, patch_size=8)
        processor = transformers.Qwen2_5_VLProcessor(image, tok, video, chat_template=template)
    grid = VisionGrid.from_config(video.to_dict(), budget_per_clip=model_type == "qwen3_vl")
    ours = QwenVLInputs(tok, template, model_type, VisionGrid.from_config(image.to_dict()), grid)
    clip, still = random_frames(4, 32, 48, seed=5), random_frames(1, 48, 32, seed=6)[0]
    items = [{"kind": "video", "pixels": clip, "fps": 4.0}, {"kind": "image", "pixels": still}]
    built = ours.build(items, "describe")
    texts = [ours.prompt(item["kind"], "describe") for item in items]
    metadata = [VideoMetadata(total_num_frames=4, fps=4.0, frames_indices=[0, 1, 2, 3])]
    tok.padding_side = "left"
    expected = processor(
        text=texts,
        images=[still],
        videos=[clip],
        video_metadata=metadata,
        do_sample_frames=False,
        padding=True,
        return_tensors="pt",
    )
    assert sorted(built) == sorted(k for k in expected if k != "video_metadata")
    for name in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        if name in built:
            torch.testing.assert_close(built[name], expected[name], atol=2e-6, rtol=0, msg=name)
    if model_type == "qwen3_vl":
        # transformers 5.23 keeps the template's own <|vision_start|>...<|vision_end|> around the timestamped
        # frames; the Qwen3-VL reference (qwen-vl-utils, transformers 4.57) replaces it, as ours does. Same ids
        # otherwise: ours with that outer pair added gives transformers' row.
        wrapped = f"{VISION_START}{VIDEO_PAD}{VISION_END}"
        nested = texts[0].replace(wrapped, f"{VISION_START}{wrapped}{VISION_END}")
        row = ours._expand_video(nested, tuple(built["video_grid_thw"][0].tolist()), 4, 4.0)
        real = expected["input_ids"][0][expected["attention_mask"][0] == 1]
        assert tok(row, return_tensors="pt")["input_ids"][0].tolist() == real.tolist()
        assert built["input_ids"].shape[1] == expected["input_ids"].shape[1] - 2
        return
    for name in ("input_ids", "attention_mask", "mm_token_type_ids"):
        assert torch.equal(built[name], expected[name]), name
