"""The training window in a real X display (Xvfb when DISPLAY is unset, tests/x_display.py): widgets set, buttons
invoked, events pumped, as a user would. Training runs are real `scripts/train.py` children on the tiny TI2V-5B
model and the demo clips. Screenshots of every tab and of the finished run go to workspace/test-output/ui/.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from modules.config.fields import setting
from modules.config.loading import load_config
from modules.config.train_config import TrainConfig, TrainingConfig
from modules.config.validation import ConfigError, to_dict
from modules.registry import describe_source
from modules.trainer.state.backups import backup_folders, check_backup
from modules.ui.field_specs import field_specs
from tests.gui_helpers import (
    PRESET,
    REPO,
    point_at_tiny_model,
    pump,
    screenshot,
    set_field,
    start_enabled,
    wait_for_run,
)

RUN_STEPS = 4


@pytest.fixture(scope="module")
def display(gui_display):
    return gui_display


@pytest.fixture(scope="module")
def window(display):
    from modules.ui.app import TrainWindow

    win = TrainWindow(config_path=PRESET)
    win.tabs.build_all()
    pump(win)
    yield win
    if win.run_panel.run is not None:
        win.run_panel.run.kill()
    win.close_now()


# ---- every field, from metadata --------------------------------------------------------------------------
def shown_on(win, widget, tab: str) -> bool:
    """`widget` is laid out inside `tab`'s page, and every frame between them is laid out (not hidden)."""
    page = win.tabs.page_of_tab(tab)
    node = widget
    while node is not None and node is not page:
        if not node.winfo_manager():
            return False
        node = node.master
    return node is page


def test_every_trainconfig_field_appears_on_a_tab(window):
    from modules.ui.tabs import METHOD_TABS

    tabs = window.tabs
    for method in METHOD_TABS:
        set_field(window, "training_method", method)
        assert tabs.method_tab == METHOD_TABS[method] and METHOD_TABS[method] in tabs.visible_tabs()
        values = window.form.values()
        for spec in field_specs(TrainConfig):
            if spec.hidden or not spec.applies_to(values):
                continue  # never edited (version), or not for the current choices: see the test below
            tab = tabs.tab_of_field(spec.name)
            widget = window.form.lists.get(spec.name) or window.form.fields[spec.name]
            shown = widget.frame if spec.is_dataclass_list else widget.input
            other_method = tab in METHOD_TABS.values() and tab != METHOD_TABS[method]
            # Another method's settings are hidden until that method is chosen; everything else is always there.
            assert shown_on(window, shown, tab) != other_method, f"{spec.name} on tab {tab} with method {method}"
    set_field(window, "training_method", "lora")
    for tab in tabs.visible_tabs():
        tabs.set(tab)
        pump(window, tabs.page_of_tab(tab).winfo_ismapped, timeout=3)
        screenshot(window, f"tab-{tab.replace(' & ', '-').replace(' ', '-').lower()}")


def test_settings_are_shown_only_where_they_apply(window):
    """One optimizer's settings at a time, expert settings for A14B (and 'auto') only, `version` never."""
    assert "version" not in window.form.fields
    optimizer_sections = ("prodigy", "adafactor", "came", "lion", "schedule_free")
    for optimizer in ("adamw", "adafactor", "prodigy", "lion_8bit", "schedule_free_adamw"):
        set_field(window, "training.optimizer", optimizer)
        for spec in field_specs(TrainConfig):
            section = spec.name.split(".")[1] if spec.name.startswith("training.") else None
            if section in optimizer_sections:
                shown = window.form.fields[spec.name].label.winfo_manager() != ""
                applies = optimizer.startswith(section) or (section == "schedule_free" and "schedule_free" in optimizer)
                assert shown == applies, (optimizer, spec.name)
    set_field(window, "training.optimizer", "adafactor")
    window.tabs.set("Training")
    screenshot(window, "optimizer-settings")
    set_field(window, "training.optimizer", "adamw")
    experts = window.tabs.section_frames["experts"]
    for variant, shown in (("TI2V-5B", False), ("T2V-A14B", True), ("I2V-A14B", True), ("auto", True)):
        set_field(window, "model.variant", variant)
        assert (experts.winfo_manager() != "") == shown, variant
    window.open_config(PRESET)


def test_the_mouse_wheel_scrolls_the_settings_under_the_pointer(window):
    """X11 sends the wheel as buttons 4 and 5 (customtkinter listens for <MouseWheel> only); a real pointer
    moved over the Training tab and wheeled with xdotool."""
    import shutil
    import subprocess

    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (scripts/install_display.sh)")
    window.tabs.set("Training")
    pump(window, lambda: window.tabs.pages["Training"].winfo_ismapped(), 3)
    canvas = window.tabs.pages["Training"]._parent_canvas
    canvas.yview_moveto(0)
    label = window.form.fields["training.learning_rate"].label
    x, y = label.winfo_rootx() + 5, label.winfo_rooty() + 5
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "5", "click", "5"], check=True, timeout=10)
    pump(window, lambda: canvas.yview()[0] > 0, 3)
    top = canvas.yview()[0]
    subprocess.run(["xdotool", "click", "4"], check=True, timeout=10)
    pump(window, lambda: canvas.yview()[0] < top, 3)


def test_every_field_has_a_readable_label():
    """Declared labels where given, else one made from the name: never a raw dotted key or underscores. The
    fields still without a declared label are listed (helpers add fields in parallel), not failed."""
    specs = field_specs(TrainConfig)
    for spec in specs:
        assert spec.label and "_" not in spec.label and "." not in spec.label, spec.name
        assert spec.label[0].isupper() or not spec.label[0].isalpha(), spec.name
    labelled = [spec.name for spec in specs if spec.labelled]
    assert "training.learning_rate" in labelled
    print(f"{len(specs) - len(labelled)} of {len(specs)} fields use a label made from their name")


def test_a_field_added_to_the_config_appears_without_ui_code(display):
    from modules.ui.app import TrainWindow

    # A new setting in an existing section, and a whole new section: declared the way TrainConfig declares them.
    training_plus = dataclasses.make_dataclass(
        "TrainingPlus",
        [("new_knob", int, setting(3, help="a setting the GUI has never heard of", min=0, max=9))],
        bases=(TrainingConfig,),
    )
    extra = dataclasses.make_dataclass("ExtraSection", [("flag", bool, setting(False, help="a new section's flag"))])
    config_plus = dataclasses.make_dataclass(
        "TrainConfigPlus",
        [
            ("training", training_plus, dataclasses.field(default_factory=training_plus)),
            ("extra", extra, dataclasses.field(default_factory=extra)),
        ],
        bases=(TrainConfig,),
    )
    win = TrainWindow(config_class=config_plus, config_path=PRESET)
    try:
        win.tabs.build_all()
        pump(win)
        knob = win.form.fields["training.new_knob"]
        assert win.tabs.tab_of_field("training.new_knob") == "Training"
        assert win.tabs.tab_of_field("extra.flag") == "Other"
        assert shown_on(win, knob.input, "Training") and shown_on(win, win.form.fields["extra.flag"].input, "Other")
        assert knob.get() == 3
        set_field(win, "training.new_knob", 7)
        assert win.form.config().training.new_knob == 7 and start_enabled(win)
        set_field(win, "training.new_knob", 12)
        assert knob.error_text == "training.new_knob: 12 is out of range; allowed: from 0 to 9"
        assert not start_enabled(win)
        set_field(win, "extra.flag", True)
        set_field(win, "training.new_knob", 1)
        assert win.form.config().extra.flag is True and start_enabled(win)
    finally:
        win.close_now()


# ---- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("training.max_steps", 0, 30),  # a range from the field's metadata
        ("training.learning_rate", "fast", 0.001),  # a type
        ("data.frames", 16, 17),  # a rule across the meaning of a value (check_consistency)
        ("model.transformer_dtype", "float8_e4m3fn", "float32"),  # a combination the config refuses (train_dtype)
        ("data.concepts.0.repeats", 0, 1),  # a field inside a list item (data.concepts[0].repeats)
    ],
)
def test_an_invalid_value_is_marked_with_the_configs_message_and_start_is_disabled(window, field, bad, good):
    window.open_config(PRESET)
    assert start_enabled(window)
    set_field(window, field, bad)
    # The message the trainer itself gives for the same file.
    data = json.loads(PRESET.read_text())
    from modules.config.loading import apply_override, config_from_dict

    apply_override(data, f"{field}={json.dumps(bad)}")
    with pytest.raises(ConfigError) as expected:
        config_from_dict(data)
    widget = window.form.all_widgets()[field]
    assert widget.error_text == str(expected.value)
    assert not start_enabled(window) and window.run_panel.resume_button.cget("state") == "disabled"
    assert str(expected.value) in window.run_panel.status_label.cget("text")
    if field == "data.frames":
        window.tabs.set("Data")
        screenshot(window, "invalid-value")
    set_field(window, field, good)
    assert widget.error_text is None and start_enabled(window)


def test_every_problem_is_listed_at_its_field_and_its_tab_is_marked(window):
    window.open_config(PRESET)
    pump(window)
    assert window.tabs.marked == set()
    bad = {"training.max_steps": 0, "data.frames": 16, "lora.rank": 0, "sampling.samples.0.steps": 0}
    for name, value in bad.items():
        window.form.all_widgets()[name].set(value)
    window.validate_now()
    marked = {name for name, widget in window.form.all_widgets().items() if widget.error_text}
    assert marked == set(bad)
    status = window.run_panel.status_label.cget("text")
    assert status.startswith(f"cannot start: {len(bad)} problems:")
    assert all(widget.error_text in status for name, widget in window.form.all_widgets().items() if name in bad)
    assert window.tabs.marked == {"Training", "Data", "LoRA", "Sampling"}
    window.tabs.set("Training")
    screenshot(window, "all-problems")
    window.open_config(PRESET)
    assert window.tabs.marked == set() and start_enabled(window)


# ---- presets, save, run --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, demo_data_dir, tmp_path_factory):
    return tiny_model_dir("TI2V-5B"), demo_data_dir, tmp_path_factory.mktemp("gui_cache")


def test_preset_change_save_start_runs_to_the_end(window, tiny, tmp_path):
    model, data, cache = tiny
    assert window.open_config(PRESET)
    workspace = tmp_path / "run"
    overrides = point_at_tiny_model(window, model, data, workspace, cache, RUN_STEPS)
    # The Model tab shows what the chosen path holds, as the plugin's detection (via the registry) sees it.
    pump(window, lambda: not window.model_info.pending(), 120)
    assert window.model_info.text.startswith(f"base_path: {describe_source('wan_2_2', str(model))}")
    assert "TI2V-5B diffusers folder" in window.model_info.text
    set_field(window, "lora.rank", 4)
    saved = tmp_path / "saved.json"
    assert window.save_config(saved)
    # Saved == the preset with the same changes made through the trainer's own loader.
    expected = to_dict(load_config(PRESET, [*overrides, "lora.rank=4"]))
    assert json.loads(saved.read_text()) == expected
    assert to_dict(load_config(saved)) == expected  # train.py's loader reads it back unchanged

    panel = window.run_panel
    panel.start_button.invoke()
    assert panel.run is not None and panel.stop_button.cget("state") == "normal"
    assert not start_enabled(window)
    wait_for_run(window)
    # What Start ran is the saved config, through scripts/train.py.
    assert json.loads((workspace / "ui" / "run_config.json").read_text()) == expected
    assert panel.status_kind == "done", panel.status_label.cget("text")
    assert panel.progress_bar.get() == pytest.approx(1.0)
    assert panel.progress_label.cget("text").startswith(f"step {RUN_STEPS}/{RUN_STEPS}")
    assert [step for step, _ in panel.loss_plot.points] == list(range(1, RUN_STEPS + 1))
    assert (workspace / "output" / "lora.safetensors").is_file()
    samples = sorted((workspace / "samples").glob("*.mp4"))
    assert samples and panel.sample_view.path == samples[-1]
    pump(window, lambda: len(panel.sample_view.frames) >= 2, timeout=10)  # decoded on a thread of its own
    assert len(panel.sample_view.frames) >= 2 and panel.sample_view.frames[0].size == (64, 64)
    assert panel.sample_view.images[0].cget("image") is not None
    assert start_enabled(window)
    screenshot(window, "finished-run")


def test_stop_leaves_a_backup_and_resume_continues_from_it(window, tiny, tmp_path):
    model, data, cache = tiny
    assert window.open_config(PRESET)
    workspace = tmp_path / "run"
    point_at_tiny_model(window, model, data, workspace, cache, 500)
    set_field(window, "sampling.sample_at_end", False)
    panel = window.run_panel
    panel.start_button.invoke()
    pump(window, lambda: panel.step >= 2, 180)
    panel.stop_button.invoke()
    wait_for_run(window)
    assert panel.status_kind == "stopped", panel.status_label.cget("text")
    (backup,) = backup_folders(workspace / "backups")
    stopped_at = check_backup(backup)["global_step"]
    assert f"Stopped at step {stopped_at}" in panel.status_label.cget("text")
    assert "backup.continue_last_backup=true" in panel.status_label.cget("text")
    assert [s for s, _ in panel.loss_plot.points] == list(range(1, stopped_at + 1))

    set_field(window, "training.max_steps", stopped_at + 2)
    panel.resume_button.invoke()
    wait_for_run(window)
    assert panel.status_kind == "done", panel.status_label.cget("text")
    log = panel.log.get("1.0", "end")
    assert f"resumed from {backup} at step {stopped_at} " in log
    assert [s for s, _ in panel.loss_plot.points] == list(range(1, stopped_at + 3))
    assert (workspace / "output" / "lora.safetensors").is_file()


def test_a_failing_run_shows_its_error_and_the_window_stays_usable(window, tiny, tmp_path):
    model, data, cache = tiny
    assert window.open_config(PRESET)
    point_at_tiny_model(window, model, data, tmp_path / "run", cache, 3)
    missing = tmp_path / "no_such_folder"
    set_field(window, "data.concepts.0.path", str(missing))
    panel = window.run_panel
    panel.start_button.invoke()
    wait_for_run(window)
    assert panel.status_kind == "failed"
    assert f"{missing}: the concept folder does not exist" in panel.status_label.cget("text")
    screenshot(window, "failed-run")
    # Still usable: settings edit, validate, and Start is offered again.
    set_field(window, "training.max_steps", 0)
    assert not start_enabled(window)
    set_field(window, "training.max_steps", 3)
    assert start_enabled(window)
    assert panel.status_kind == "valid"  # the old failure message went with the change
    assert panel.stop_button.cget("fg_color") != panel.start_button.cget("fg_color")  # disabled looks disabled


def test_data_preview_shows_clips_with_captions_and_the_skip_report(window, tiny, tmp_path):
    import shutil

    _, data, _ = tiny
    concept = tmp_path / "concept"
    shutil.copytree(data, concept)
    clips = sorted(p for p in concept.iterdir() if p.suffix != ".txt")
    uncaptioned = clips[0].with_suffix(".txt")
    uncaptioned.unlink()  # this clip has no caption now: on_missing_caption 'skip' skips it
    (concept / "broken.mp4").write_bytes(b"not a video")
    (concept / "broken.txt").write_text("a caption for a broken file")
    assert window.open_config(PRESET)
    set_field(window, "data.concepts.0.path", str(concept))
    window.data_preview.scan()
    window.tabs.set("Data")
    pump(window, lambda: window.data_preview.scanned, 120)
    shown = window.data_preview.shown
    assert len(shown) == 3 and shown[0][0] == clips[1]
    assert shown[0][1] == clips[1].with_suffix(".txt").read_text().strip()
    report = window.data_preview.report_label.cget("text")
    assert f"{clips[0].name}: missing caption" in report and "broken.mp4: unreadable media" in report
    screenshot(window, "data-preview")


def test_without_a_display_the_window_says_so_in_one_line():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_ui.py")], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot open a window") and "xvfb-run" in line


# ---- boundaries ----------------------------------------------------------------------------------------
def test_the_gui_imports_nothing_from_the_wan_plugin():
    import ast

    for path in sorted((REPO / "modules" / "ui").glob("*.py")) + [REPO / "scripts" / "train_ui.py"]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith("modules.wan"), f"{path.name} imports {name}"
