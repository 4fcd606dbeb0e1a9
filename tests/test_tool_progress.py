"""The Tools tab's progress reader against tqdm's own drawing of a bar (the scripts' progress output), and the
command lines its tool declarations build."""

from __future__ import annotations

import io

from tqdm import tqdm

from modules.ui.tool_progress import last_progress, segments
from modules.ui.tool_specs import REPO, TOOLS, tool_named


def test_last_progress_reads_what_tqdm_drew():
    stream = io.StringIO()
    with tqdm(total=9, desc="caching latents", unit="window", file=stream, mininterval=0, ascii=False) as bar:
        for done in range(1, 10):
            bar.update(1)
            found = last_progress(stream.getvalue())
            assert (found.desc, found.n, found.total) == ("caching latents", done, 9)
    assert last_progress(stream.getvalue()).fraction == 1.0


def test_a_bar_without_description_and_text_around_it():
    stream = io.StringIO()
    stream.write("loading the VAE\n")
    with tqdm(total=30, file=stream, mininterval=0, ascii=True) as bar:
        bar.update(7)
    stream.write("\nINFO written 3 files\n")
    found = last_progress(stream.getvalue())
    assert (found.desc, found.n, found.total) == ("", 7, 30)
    assert last_progress("no bar here\r\nat all") is None
    # The visible lines: a redrawn bar shows once, as last drawn.
    assert segments("a\rb\rc\nd") == ["c", "d"]


def test_commands_pass_set_arguments_only_in_order():
    tool = tool_named("Convert LoRA")
    command = tool.command({"source": "in.safetensors", "destination": "out.safetensors", "format": "kohya",
                            "dtype": None, "model": ""}, python="python")  # fmt: skip
    assert command == ["python", "scripts/convert_model.py", "lora", "in.safetensors", "out.safetensors",
                       "--format", "kohya"]  # fmt: skip
    sample = tool_named("Sample")
    values = {"model": "m", "prompt": "a fox", "out": "o", "lora": ["a.safetensors=0.8", "b"], "steps": 4}
    assert sample.command(values, python="python")[2:] == [
        *("--model", "m", "--lora", "a.safetensors=0.8", "--lora", "b", "--prompt", "a fox", "--out", "o"),
        *("--steps", "4"),
    ]
    assert sample.missing({"model": "m"}) == ["Prompt", "Output folder"]
    for tool in TOOLS:  # every declared script exists, every argument is named once
        names = [arg.spec.name for arg in tool.args]
        assert len(names) == len(set(names)), tool.title
        assert (REPO / tool.command({}, python="python")[1]).is_file(), tool.title
