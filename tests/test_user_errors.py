"""One kind of user error: every error class of modules/ is a UserError or listed here as internal, and every
script reports user errors through `run_script` (one line, the class's exit code, no traceback) instead of a list
of classes of its own.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import modules
from modules.util.errors import UserError, run_script

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"

# Exceptions of modules/ that are not user errors, and why: each keeps its traceback or is handled where raised.
INTERNAL = {
    "modules.data.flow.pipeline.PipelineError": "stages that do not fit together: a bug in the code that builds them",
    "modules.data.sources.concepts.UnreadableCaption": "caught in concepts.py: the file is skipped or DataError raised",
    "modules.trainer.guards.stop_request.TrainingStopped": "a clean stop (exit 3), not an error",
    "modules.util.stop_point.StopRequested": "a stop asked for at a safe point, turned into TrainingStopped (exit 3)",
}
# Exit codes the docs list: 2 (scripts/train.py's docstring, docs/reliability.md), 4 out of memory (the same),
# 1 for the window that cannot open (docs/ui.md).
DOCUMENTED_EXIT_CODES = {"modules.ui.display.NoWindowError": 1}
OUT_OF_MEMORY = {"modules.trainer.guards.oom.OutOfMemoryStop", "modules.data.flow.stages.CachingOutOfMemory"}
# Scripts imported by other scripts, with no entry point of their own.
HELPERS = {"_repo_path", "_quiet_other_ranks", "plan_memory_cli"}


def all_error_classes() -> dict[str, type]:
    """Every exception class defined in modules/, by dotted name (importing every module)."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(modules.__path__, "modules."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
                found[f"{info.name}.{value.__qualname__}"] = value
    return found


def test_every_error_class_is_a_user_error_or_listed_as_internal():
    errors = all_error_classes()
    assert "modules.config.validation.ConfigError" not in errors  # defined once, in util, and re-exported
    user = {name for name, cls in errors.items() if issubclass(cls, UserError)}
    assert {name for name in errors if name not in user} == set(INTERNAL)
    assert {"modules.util.errors.ConfigError", "modules.wan.formats.lora_file.LoraFileError"} <= user
    assert len(user) >= 20
    for name in user:
        expected = 4 if name in OUT_OF_MEMORY else DOCUMENTED_EXIT_CODES.get(name, 2)
        assert errors[name].exit_code == expected, name


def test_run_script_prints_a_user_error_in_one_line_with_its_exit_code(capsys):
    from modules.config.validation import ConfigError
    from modules.trainer.guards.oom import OutOfMemoryStop

    def bad_setting():
        raise ConfigError("training.learning_rate: -1 is below 0. Fix: use a positive rate")

    assert run_script(bad_setting) == 2
    assert capsys.readouterr().err == "error: training.learning_rate: -1 is below 0. Fix: use a positive rate\n"

    def out_of_memory():
        raise OutOfMemoryStop("out of GPU memory in step 3")

    assert run_script(out_of_memory) == 4
    assert run_script(lambda value: value, 0) == 0

    def bug():
        raise KeyError("an internal name")

    with pytest.raises(KeyError):  # not a user error: the traceback stays
        run_script(bug)


def script_breaks(source: str, error_names: set[str]) -> list[str]:
    """What in a script's source keeps user errors from reaching run_script as one class."""
    tree = ast.parse(source)
    breaks = []
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    if "run_script" not in called:
        breaks.append("its entry point does not go through run_script")
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            names = {t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in types}
            # A list of user-error classes instead of UserError; a ValueError/KeyError (among which they used to
            # hide) only where the handler turns it into a user error by raising one.
            converts = any(isinstance(inner, ast.Raise) and inner.exc is not None for inner in ast.walk(node))
            listed = names & (error_names | (set() if converts else {"ValueError", "KeyError"})) - {"UserError"}
            breaks += [f"line {node.lineno} catches {name}" for name in sorted(listed)]
    return breaks


def test_every_script_catches_user_errors_as_one_class():
    error_names = {name.rpartition(".")[2] for name, cls in all_error_classes().items() if issubclass(cls, UserError)}
    scripts = sorted(p for p in SCRIPTS.glob("*.py") if p.stem not in HELPERS)
    assert len(scripts) >= 15
    for path in scripts:
        assert script_breaks(path.read_text(encoding="utf-8"), error_names) == [], path.name
    for helper in HELPERS:  # helpers are imported by a script, never run
        assert "__main__" not in (SCRIPTS / f"{helper}.py").read_text(encoding="utf-8")
    # The check can fail: the list train.py had, and a script without run_script.
    listed = "try:\n    main()\nexcept (ConfigError, LoraFileError) as error:\n    pass\nsys.exit(run_script(main))\n"
    assert script_breaks(listed, error_names) == ["line 3 catches ConfigError", "line 3 catches LoraFileError"]
    assert script_breaks("sys.exit(main())\n", error_names) == ["its entry point does not go through run_script"]


def test_a_script_exits_2_with_one_line_on_a_user_error(tmp_path):
    missing = tmp_path / "prompts.txt"
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "sample.py"), "--model", str(tmp_path), "--prompts-file", str(missing)]
        + ["--out", str(tmp_path / "out"), "--format", "png"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"error: --prompts-file {missing}: cannot read it (No such file or directory)"
    )
