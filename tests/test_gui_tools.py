"""The window's Tools tab, samples gallery, path pickers and list rows, in a real X display (tests/x_display.py):
a real `scripts/dataset.py check` child on the demo clips, a real MP4 made by ffmpeg played frame by frame."""

from __future__ import annotations

import json
import os
import shlex
import time

import numpy as np
import pytest

from modules.config.fields import PATH_KINDS
from modules.config.train_config import TrainConfig
from modules.ui.field_specs import field_specs
from modules.ui.tool_progress import segments
from tests.gui_helpers import PRESET, pump, screenshot, set_field
from tests.media_fixtures import frame_number, write_pattern_video

MEDIA = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".png", ".jpg", ".jpeg", ".webp")


@pytest.fixture(scope="module")
def window(gui_display):
    from modules.ui.app import TrainWindow

    win = TrainWindow(config_path=PRESET)
    win.tabs.build_all()
    pump(win)
    yield win
    for form in win.tools_tab.forms.values():
        if form.process is not None:
            form.process.popen.kill()
    win.close_now()


def every_spec():
    """Every setting, the items of lists of sub-settings (concepts, samples, base LoRAs) included."""
    for spec in field_specs(TrainConfig):
        yield spec
        if spec.is_dataclass_list:
            yield from field_specs(spec.item_kind)


def looks_like_a_path(spec) -> bool:
    """Text named as a path is (the rule the window used before kinds were declared, and the names it missed)."""
    if str not in (spec.kind, spec.item_kind):
        return False
    last = spec.name.rsplit(".", 1)[-1]
    return last.endswith(("path", "_dir", "_file", "continue_from", "_image", "_embeddings", "validation_concept"))


def test_every_path_field_declares_its_kind_and_gets_those_pickers(window):
    from modules.ui.field_widgets import PICKERS, PathField, ScalarListField

    path_specs = [spec for spec in every_spec() if looks_like_a_path(spec)]
    assert len(path_specs) >= 14
    for spec in path_specs:
        assert spec.path in PATH_KINDS, f"{spec.name} declares no path kind"
    for spec in every_spec():
        assert spec.path is None or looks_like_a_path(spec), f"{spec.name}: a path kind on a non-path field"
    set_field(window, "model.base_loras", [{"path": "a.safetensors"}])
    checked = set()
    for name, widget in window.form.all_widgets().items():
        kind = getattr(getattr(widget, "spec", None), "path", None)
        if kind is None:
            assert not isinstance(widget, PathField), name
            continue
        buttons = widget.buttons if isinstance(widget, PathField) else None
        if isinstance(widget, ScalarListField):
            widget.set(["x.safetensors"])  # a row, with the pickers of the list's kind
            buttons = widget.rows[0].pickers
            widget.set([])
        assert sorted(buttons) == sorted(text for text, _ in PICKERS[kind]), name
        checked.add(name.split(".")[-1] if name.split(".")[-2].isdigit() else name)
    # The fields the issue named as getting no picker, and items of lists, are among them.
    assert {"lora.continue_from", "start_image", "path", "model.transformer_path", "output.output_path"} <= checked
    assert window.form.fields["model.transformer_path"].buttons.keys() == {"File...", "Folder..."}
    assert window.form.fields["lora.continue_from"].buttons.keys() == {"File..."}
    window.open_config(PRESET)


def test_a_list_of_numbers_is_edited_as_rows_with_a_message_per_item(window):
    from modules.ui.field_widgets import ScalarListField

    widget = window.form.fields["sampling.validation_quantiles"]
    assert isinstance(widget, ScalarListField)
    set_field(window, "sampling.validation_quantiles", [0.25, 0.5])
    assert len(widget.rows) == 2 and widget.get() == [0.25, 0.5]
    widget.add_button.invoke()
    widget.rows[2].variable.set("0.75")
    window.validate_now()
    assert window.form.values()["sampling"]["validation_quantiles"] == [0.25, 0.5, 0.75]
    assert window.form.valid_config.sampling.validation_quantiles == [0.25, 0.5, 0.75]
    widget.rows[1].variable.set("half")
    window.validate_now()
    label = widget.rows[1].message
    assert label.winfo_manager() and "expected a number" in label.cget("text"), label.cget("text")
    assert not widget.rows[0].message.winfo_manager() and window.form.valid_config is None
    widget.rows[1].remove.invoke()
    window.validate_now()
    assert widget.get() == [0.25, 0.75] and window.form.valid_config is not None
    window.open_config(PRESET)


def test_tools_tab_runs_the_dataset_check_with_progress_and_its_command(window, demo_data_dir):
    from modules.ui.tool_specs import TOOLS

    window.tabs.set("Tools")
    pump(window, lambda: window.tools_tab.selected is not None, timeout=5)
    assert [t.title for t in TOOLS][:1] == ["Check dataset"]
    form = window.tools_tab.select("Check dataset")
    assert form.run_button.cget("state") == "normal"  # no argument is required for a check
    form.widgets["inputs"].set([str(demo_data_dir)])
    form.widgets["fps"].set(24)
    form.widgets["frames"].set("seventeen")
    form.changed()
    assert form.run_button.cget("state") == "disabled" and "whole number" in form.status.cget("text")
    form.widgets["frames"].set(17)
    form.widgets["resolution"].set(64)
    form.changed()
    command = form.command_entry.get()
    assert shlex.split(command) == [
        *("python", "scripts/dataset.py", "check", str(demo_data_dir)),
        *("--fps", "24", "--frames", "17", "--resolution", "64"),
    ]
    form.copy_command()
    assert window.clipboard_get() == command
    form.run_button.invoke()
    assert form.process is not None and form.stop_button.cget("state") == "normal"
    pump(window, lambda: form.process is None, timeout=180)
    media = [p for p in demo_data_dir.iterdir() if p.suffix.lower() in MEDIA]
    assert form.exit_code == 0, form.output.get("1.0", "end")[-2000:]
    assert form.status.cget("text") == "done" and form.progress_bar.get() == 1
    # The progress line is tqdm's own count of the files probed: every media file of the folder.
    assert form.progress_label.cget("text").startswith(f"probing media: {len(media)}/{len(media)}")
    output = form.output.get("1.0", "end-1c")
    assert str(demo_data_dir) in output and "\r" not in output
    # Drawn piece by piece while the tool ran, the box equals the whole log drawn at once.
    logged = form.process_log.read_bytes().decode("utf-8")  # (read_text would turn the bars' \r into \n)
    assert output == "\n".join(segments(logged)) and output.count("probing media:") == 1
    screenshot(window, "tab-tools")


def test_this_windows_settings_fill_a_config_argument(window):
    """Build cache with the window's settings: the file it names is the config Start would run."""
    from modules.config.loading import load_config
    from modules.config.validation import to_dict

    form = window.tools_tab.select("Build cache")
    assert form.run_button.cget("state") == "disabled" and "Training config is required" in form.status.cget("text")
    window.validate_now()
    form.window_buttons["config_path"].invoke()
    path = form.widgets["config_path"].get()
    assert to_dict(load_config(path)) == window.form.config_data()
    assert shlex.split(form.command_entry.get()) == ["python", "scripts/cache.py", "--config-path", path]
    assert form.run_button.cget("state") == "normal"


def test_a_tool_is_stopped(window, tmp_path):
    """Stop sends SIGINT to the tool's child; it ends (no orphan) and the form says so."""
    form = window.tools_tab.select("Sample")
    model = tmp_path / "no-model"
    form.widgets["model"].set(str(model))
    form.widgets["prompt"].set("a fox")
    form.widgets["out"].set(str(tmp_path / "out"))
    form.changed()
    form.run_button.invoke()
    process = form.process
    time.sleep(0.5)  # still importing torch: sample.py needs seconds before it reads the model path
    form.stop_button.invoke()
    assert process.stops_sent == 1 and form.stop_button.cget("text") == "Kill"
    pump(window, lambda: form.process is None, timeout=60)
    pid = process.popen.pid
    assert form.exit_code != 0 and form.status.cget("text").startswith("stopped"), form.status.cget("text")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_gallery_lists_samples_newest_first_and_plays_one(window, tmp_path):
    workspace = tmp_path / "workspace"
    samples = workspace / "samples"
    samples.mkdir(parents=True)
    older = write_pattern_video(samples / "step000004-0.mp4", count=40, fps=20)
    (samples / "step000004-0.json").write_text(json.dumps({"step": 4, "prompt": "a counter counting"}))
    newer = write_pattern_video(samples / "request-step000006-0.mp4", count=12, fps=20)
    os.utime(older, (time.time() - 60, time.time() - 60))
    set_field(window, "output.workspace_dir", str(workspace))
    gallery = window.gallery
    gallery.refresh()
    assert [e.path for e in gallery.entries] == [newer, older]
    assert [e.step for e in gallery.entries] == [6, 4]  # the second from the sidecar, the first from its name
    assert "step 4" in gallery.rows[1].cget("text") and "a counter counting" in gallery.rows[1].cget("text")
    gallery.rows[1].invoke()
    pump(window, lambda: gallery.shown_frames >= 8, timeout=30)
    seen = []
    for _ in range(6):
        seen.append(frame_number(np.asarray(gallery.current_frame)))
        before = gallery.shown_frames
        pump(window, lambda b=before: gallery.shown_frames > b, timeout=5)
    assert len(gallery.frames) == 40 and gallery.current_frame.size == (96, 64)
    steps = [(b - a) % 40 for a, b in zip(seen, seen[1:])]
    assert all(step >= 1 for step in steps), seen  # each new frame shown is a later frame of the video
    window.tabs.set("Sampling")
    window.tabs.page_of_tab("Sampling")._parent_canvas.yview_moveto(1.0)
    screenshot(window, "samples-gallery")
    window.open_config(PRESET)


def test_tools_tab_converts_a_lora_end_to_end(window, tiny_model_dir, tmp_path):
    """Convert LoRA through the form: the file written holds the same tensors under diffusers' names."""
    import torch
    from safetensors import safe_open

    from modules.module.lora import attach_lora, lora_state_dict
    from modules.wan.formats.lora_file import load_lora_file, save_lora_file
    from modules.wan.loading.loader import load_wan_model

    transformer = load_wan_model(tiny_model_dir("TI2V-5B"), transformer_dtype=torch.float32).transformer
    attach_lora(transformer, rank=4, alpha=2.0)
    generator = torch.Generator().manual_seed(0)
    lora = {k: torch.randn(v.shape, generator=generator) for k, v in lora_state_dict(transformer).items()}
    comfy = save_lora_file(lora, tmp_path / "comfy.safetensors", rank=4, alpha=2.0)
    form = window.tools_tab.select("Convert LoRA")
    assert form.widgets["source"].buttons.keys() == {"File..."}
    assert form.widgets["destination"].buttons.keys() == {"Save as..."}
    out = tmp_path / "diffusers.safetensors"
    form.widgets["source"].set(str(comfy))
    form.widgets["destination"].set(str(out))
    form.widgets["format"].set("diffusers")
    form.changed()
    assert shlex.split(form.command_entry.get())[1:] == [
        *("scripts/convert_model.py", "lora", str(comfy), str(out), "--format", "diffusers"),
    ]
    form.run_button.invoke()
    pump(window, lambda: form.process is None, timeout=180)
    assert form.exit_code == 0, form.output.get("1.0", "end")[-2000:]
    with safe_open(str(out), framework="pt") as file:
        assert all(key.startswith("transformer.blocks.") for key in file.keys())  # diffusers' names
    converted, _ = load_lora_file(out)  # read back from diffusers' layout into the trainer's names
    assert set(converted) == set(lora) and all(torch.equal(converted[k], lora[k]) for k in lora)
