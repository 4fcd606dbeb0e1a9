"""The concept editor on the Data tab, in a real X display (tests/x_display.py): cards with counts, seconds of video,
skip reasons and an animated preview from a concept folder of real videos made by the bundled ffmpeg; the window
answering while the cards fill; a caption edited in the per-file view, written atomically, and then trained (the
text embedding cached by a scripts/train.py run equals UMT5's encoding of the new caption, computed here directly
with transformers). Screenshots: workspace/test-output/ui/concept-cards.png and concept-files.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from modules.config.validation import to_dict
from tests.config_builders import tiny_run_config
from tests.gui_helpers import REPO, pump, screenshot
from tests.media_fixtures import write_pattern_video

FPS = 24
FRAMES = {"a_fox.mp4": 40, "b_owl.mp4": 30, "c_uncaptioned.mp4": 24}  # shown frames of each clip
NEW_CAPTION = "a red fox leaps over a frozen creek at dawn"
WRITTEN_CAPTION = "an owl turns its head slowly"
BOUND_S = 0.2  # the longest the Tk loop may go unanswered (issue 26)


@pytest.fixture(scope="module")
def display(gui_display):
    return gui_display


@pytest.fixture(scope="module")
def concept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concept")
    for name, count in FRAMES.items():
        write_pattern_video(folder / name, count=count, fps=FPS, width=64, height=48)
    (folder / "a_fox.txt").write_text("a fox")
    (folder / "b_owl.txt").write_text("an owl")
    (folder / "d_broken.mp4").write_bytes(b"not a video")  # skipped: unreadable media
    (folder / "d_broken.txt").write_text("a caption for a broken file")
    return folder  # c_uncaptioned.mp4 has no caption: skipped (on_missing_caption 'skip')


@pytest.fixture(scope="module")
def window(display, concept, tiny_model_dir, tmp_path_factory):
    from modules.ui.app import TrainWindow

    root = tmp_path_factory.mktemp("concept_run")
    config = tiny_run_config(
        tiny_model_dir("TI2V-5B"),
        root / "workspace",
        # the second concept is switched off: its folder does not even exist, and neither the check nor the run mind
        [{"path": concept}, {"path": root / "not-there", "enabled": False}],
        cache_dir=root / "cache",
        max_steps=1,
    )
    path = root / "config.json"
    path.write_text(json.dumps(to_dict(config)))
    win = TrainWindow(config_path=path)
    win.tabs.build_all()
    win.tabs.set("Data")
    pump(win)
    yield win
    win.close_now()


def editor_of(win):
    return win.form.lists["data.concepts"]


def test_cards_show_counts_seconds_skip_reasons_and_a_moving_preview_while_the_window_answers(window):
    editor = editor_of(window)
    gaps, last = [], [time.monotonic()]

    def ping():
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now
        window.after(10, ping)

    window.after(10, ping)
    editor.inspect(window.form.values(), force=True)  # as after an edit of the data settings
    pump(window, lambda: not editor.checking, 180)
    assert editor.result is not None, editor.status.cget("text")

    first, second = editor.cards
    stats, skips = first.stats.cget("text"), first.skips.cget("text")
    seconds = (FRAMES["a_fox.mp4"] + FRAMES["b_owl.mp4"]) / FPS  # the two captioned, readable clips
    assert stats.startswith("2 file(s) train: 2 window(s), 2 sample(s) an epoch")
    assert f"{seconds:.1f} s of video" in stats and "2 skipped" in stats
    assert "c_uncaptioned.mp4: missing caption" in skips and "d_broken.mp4: unreadable media" in skips
    assert second.stats.cget("text") == "off: not checked"
    # An animated preview: several frames of a_fox.mp4's first window, shown one after another.
    assert len(first.frames) >= 3
    shown = {first.frame_index}
    pump(window, lambda: shown.add(first.frame_index) or len(shown) >= 3, 5)

    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    longest = max(gaps)
    print(f"longest Tk gap while the cards filled: {longest * 1000:.0f} ms (load per core {load:.1f})")
    if load <= 2:  # above that the gaps measure the neighbours, as in test_gui_responsive.py
        assert longest < BOUND_S
    screenshot(window, "concept-cards")


def test_cards_follow_add_remove_and_the_enabled_switch_through_the_form(window, concept, tmp_path):
    from tests.gui_helpers import set_field, start_enabled

    editor = editor_of(window)
    editor.add_button.invoke()
    pump(window)
    assert len(editor.cards) == 3 and len(window.form.values()["data"]["concepts"]) == 3
    third_box = editor.items[2][0]
    remove = next(w for w in third_box.winfo_children() if getattr(w, "cget", None) and _text(w) == "Remove")
    remove.invoke()
    pump(window)
    assert len(editor.cards) == 2 and not third_box.winfo_exists()
    # Switching the only enabled concept off is the config's own error, at the list, and Start is disabled.
    set_field(window, "data.concepts.0.enabled", False)
    assert window.form.values()["data"]["concepts"][0]["enabled"] is False
    assert "every concept is switched off" in (editor.error_text or "")  # the message names both concepts' fields
    assert not start_enabled(window)
    set_field(window, "data.concepts.0.enabled", True)
    assert start_enabled(window)
    # A folder that does not exist: the check's own message above the cards.
    set_field(window, "data.concepts.0.path", str(tmp_path / "no-such-folder"))
    pump(window, lambda: not editor.checking, 180)
    assert "the concept folder does not exist" in editor.status.cget("text")
    set_field(window, "data.concepts.0.path", str(concept))
    pump(window, lambda: not editor.checking, 180)
    assert editor.result is not None


def _text(widget) -> str:
    try:
        return widget.cget("text")
    except Exception:  # noqa: BLE001 - frames have no text
        return ""


@pytest.mark.slow
def test_a_caption_edited_in_the_concept_editor_is_saved_atomically_and_trained(window, concept, tmp_path):
    editor = editor_of(window)
    if editor.result is None:
        editor.inspect(window.form.values(), force=True)
        pump(window, lambda: not editor.checking, 180)
    view = editor.open_files(0)
    pump(window, lambda: len(view.rows) == 4, 5)
    fox, uncaptioned = view.rows[str(concept / "a_fox.mp4")], view.rows[str(concept / "c_uncaptioned.mp4")]
    assert fox.text() == "a fox"
    assert "trains as 1 window(s): 32x32x5 from source frames 0-" in fox.info.cget("text")
    assert "SKIPPED, unreadable media" in view.rows[str(concept / "d_broken.mp4")].info.cget("text")
    assert "SKIPPED, missing caption" in uncaptioned.info.cget("text")

    caption_file = concept / "a_fox.txt"
    inode = caption_file.stat().st_ino
    fox.caption.delete("1.0", "end")
    fox.caption.insert("1.0", NEW_CAPTION)
    fox.save_button.invoke()
    uncaptioned.caption.insert("1.0", WRITTEN_CAPTION)  # a skipped file gets the caption it lacked
    uncaptioned.save_button.invoke()
    pump(window, lambda: len(view.saved) == 2 and not editor.checking, 180)
    assert caption_file.read_text() == NEW_CAPTION + "\n"
    assert caption_file.stat().st_ino != inode  # replaced by a rename (atomic), not rewritten in place
    assert not list(concept.glob(".*.tmp"))
    assert (concept / "c_uncaptioned.txt").read_text() == WRITTEN_CAPTION + "\n"
    # The concept was checked again: the file that had no caption trains now.
    assert editor.cards[0].stats.cget("text").startswith("3 file(s) train")
    assert "SKIPPED" not in uncaptioned.info.cget("text")
    screenshot(view, "concept-files")
    view.destroy()

    saved = tmp_path / "saved.json"
    assert window.save_config(saved)
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config-path", str(saved)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    config = json.loads(saved.read_text())
    cached = cached_text_embeddings(config["data"]["cache_dir"])
    new, written, old = umt5_encodings(config["model"]["base_path"], [NEW_CAPTION, WRITTEN_CAPTION, "a fox"])
    assert sum(matches(tensor, new) for tensor in cached) == 1
    assert sum(matches(tensor, written) for tensor in cached) == 1
    assert not any(matches(tensor, old) for tensor in cached)  # the caption before the edit was not trained


def cached_text_embeddings(cache_dir: str) -> list:
    from pathlib import Path

    from safetensors.torch import load_file

    return [t for f in sorted(Path(cache_dir, "text").rglob("*.safetensors")) for t in load_file(f).values()]


def umt5_encodings(model_dir: str, captions: list[str]) -> list:
    """Each caption's UMT5 states as diffusers' WanPipeline computes them (real tokens only), straight from the
    model's files with transformers (not through the trainer's encoder code)."""
    import torch
    from transformers import AutoTokenizer, UMT5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    encoder = UMT5EncoderModel.from_pretrained(model_dir, subfolder="text_encoder", torch_dtype=torch.float32)
    tokens = tokenizer(captions, padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
    return [h[: int(mask.sum())] for h, mask in zip(hidden, tokens.attention_mask)]


def matches(tensor, expected) -> bool:
    import torch

    return tensor.shape == expected.shape and torch.allclose(tensor.float(), expected, atol=1e-5)
