"""The Tools tab's tools as data: each is a script of scripts/ with its arguments, declared as the config's fields
are (a FieldSpec each, with its path kind for the pickers), so the tab's forms are built by the same widgets as
the settings. `command()` turns a form's values into the argument list the tab runs and shows for reuse.

An argument left empty (or a switch left off) is not passed: the script's own default applies, and the help
text names it. No Tk here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.ui.field_specs import FieldSpec

REPO = Path(__file__).resolve().parent.parent.parent
CONFIG_TYPES = (("Training config", "*.json"), ("All files", "*"))
LORA_TYPES = (("LoRA", "*.safetensors"), ("All files", "*"))
WEIGHT_TYPES = (("Weights", "*.safetensors"), ("All files", "*"))
IMAGE_TYPES = (("Images", "*.png *.jpg *.jpeg *.webp"), ("All files", "*"))
DTYPES = ("float32", "bfloat16", "float16")
EXPERTS = ("transformer", "transformer_2")


@dataclass(frozen=True)
class ToolArg:
    flag: str  # "--out", or "" for a positional argument
    spec: FieldSpec
    window_config: bool = False  # offers "this window's settings": the window's config saved to a file


@dataclass(frozen=True)
class Tool:
    title: str
    script: str  # under scripts/
    subcommand: tuple[str, ...]
    args: tuple[ToolArg, ...]
    about: str

    def command(self, values: dict[str, Any], python: str = sys.executable) -> list[str]:
        """The argument list for `values` (argument name -> the widget's value)."""
        command = [python, str(Path("scripts") / self.script), *self.subcommand]
        for arg in self.args:
            value = values.get(arg.spec.name)
            if value is None or value == "" or value is False or value == []:
                continue
            if arg.flag and value is True:
                command.append(arg.flag)
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                command += [arg.flag, str(item)] if arg.flag else [str(item)]
        return command

    def missing(self, values: dict[str, Any]) -> list[str]:
        """Labels of the required arguments without a value."""
        return [a.spec.label for a in self.args if a.spec.required and values.get(a.spec.name) in (None, "", [])]


def arg(
    flag: str,
    label: str,
    help: str,
    kind: Any = str,
    *,
    name: str = "",
    required: bool = False,
    default: Any = None,
    choices: tuple | None = None,
    path: str | None = None,
    file_types: tuple = (),
    many: bool = False,
    window_config: bool = False,
) -> ToolArg:
    """One argument; `many`: a list of values (a row each), passed one after the other."""
    spec = FieldSpec(
        name=name or flag.lstrip("-").replace("-", "_"),
        kind=list if many else kind,
        item_kind=kind if many else None,
        optional=kind is not bool and not required,
        default=default if default is not None else ([] if many else (False if kind is bool else None)),
        required=required,
        help=help,
        choices=choices,
        min=None,
        max=None,
        label=label,
        labelled=True,
        path=path,
        file_types=file_types,
    )
    return ToolArg(flag, spec, window_config)


def _data_settings(positional_help: str, path: str) -> tuple[ToolArg, ...]:
    """The data settings dataset.py's check and caption share: a config, or folders with the window settings."""
    return (
        arg("", "Folders", positional_help, name="inputs", path=path, many=True),
        arg("--config", "Or a training config", "its concepts and data settings", path="file",
            file_types=CONFIG_TYPES, window_config=True),
        arg("--fps", "Frame rate", "trained frame rate (16; TI2V-5B: 24)", float),
        arg("--frames", "Frames per window", "window length, 4n+1 (81)", int),
        arg("--resolution", "Resolution", "bucket area is resolution^2 (480)", int),
        arg("--subfolders", "Include subfolders", "also read the folders' subfolders", bool),
    )  # fmt: skip


TOOLS: tuple[Tool, ...] = (
    Tool(
        "Check dataset",
        "dataset.py",
        ("check",),
        _data_settings("concept folders (or use a training config)", "folder"),
        "What will train, what is skipped and why: the pipeline's stages up to the buckets, no model needed.",
    ),
    Tool(
        "Split videos",
        "dataset.py",
        ("split",),
        (
            arg(
                "",
                "Videos",
                "video files or folders of them (only read)",
                name="inputs",
                path="file_or_folder",
                many=True,
                required=True,
            ),
            arg("--out", "Clips folder", "folder for the clips and their .json sidecars", path="folder", required=True),
            arg("--min-seconds", "Shortest clip (s)", "shortest clip kept (default 1)", float),
            arg("--max-seconds", "Longest clip (s)", "split longer shots (10; 0: no limit)", float),
            arg("--gap", "Gap at cuts (s)", "seconds kept away from each cut (default 0)", float),
            arg("--threshold", "Cut threshold", "PySceneDetect content threshold (27)", float),
            arg("--reencode", "Re-encode every clip", "even on keyframe cuts", bool),
        ),
        "Long videos into clips at shot boundaries (PySceneDetect), with a JSON sidecar per clip.",
    ),  # fmt: skip
    Tool(
        "Caption",
        "dataset.py",
        ("caption",),
        (
            arg(
                "--model",
                "Captioning model",
                "a Qwen2.5-VL / Qwen3-VL checkpoint folder or a cached hub id",
                path="folder",
                required=True,
            ),
            *_data_settings("files or folders (or use a training config)", "file_or_folder"),
            arg("--prefix", "Prefix", "text put before every caption (a trigger word)"),
            arg("--suffix", "Suffix", "text put after every caption"),
            arg("--batch-size", "Batch size", "files per generate call (1)", int),
            arg("--quantize", "Quantize", "bitsandbytes (CUDA)", choices=("none", "8bit", "4bit")),
            arg("--overwrite", "Replace existing captions", "by default files with a caption are kept", bool),
            arg("--allow-download", "Allow download", "download the model if it is not cached", bool),
        ),
        "A caption .txt beside each video and image, from the frames the trainer will train on.",
    ),  # fmt: skip
    Tool(
        "Build cache",
        "cache.py",
        (),
        (
            arg(
                "--config-path",
                "Training config",
                "the config whose data is cached",
                path="file",
                file_types=CONFIG_TYPES,
                required=True,
                window_config=True,
            ),
        ),
        "Encode every training window, caption and sample prompt not yet cached (VAE and UMT5 only), then exit.",
    ),  # fmt: skip
    Tool(
        "Sample",
        "sample.py",
        (),
        (
            arg(
                "--model",
                "Model",
                "WAN 2.2 diffusers folder, or a hub id in the local cache",
                path="folder",
                required=True,
            ),
            arg(
                "--lora",
                "LoRA",
                "a LoRA file; PATH=W for a weight (A14B: PATH=W,W_LOW)",
                path="file",
                file_types=LORA_TYPES,
                many=True,
            ),
            arg("--prompt", "Prompt", "what the video shows", required=True),
            arg("--negative-prompt", "Negative prompt", "what to steer away from"),
            arg("--out", "Output folder", "where the video and its sidecar go", path="folder", required=True),
            arg("--width", "Width (px)", "default: 832 (A14B) / 1280 (TI2V-5B)", int),
            arg("--height", "Height (px)", "default: 480 (A14B) / 704 (TI2V-5B)", int),
            arg("--frames", "Frames", "rounded up to 4n+1; default: the model's native count", int),
            arg("--steps", "Steps", "denoising steps", int),
            arg("--seed", "Seed", "noise seed", int),
            arg(
                "--start-image",
                "Start image",
                "image-to-video (I2V-A14B, TI2V-5B)",
                path="file",
                file_types=IMAGE_TYPES,
            ),
            arg("--dtype", "Dtype", "compute dtype", choices=DTYPES),
            arg("--device", "Device", "auto, cpu, cuda, cuda:1, ..."),
        ),
        "Videos from a base model with LoRAs, as scripts/sample.py makes them (a JSON sidecar beside each).",
    ),  # fmt: skip
    Tool(
        "Convert LoRA",
        "convert_model.py",
        ("lora",),
        (
            arg(
                "", "LoRA file", "the LoRA to convert", name="source", path="file", file_types=LORA_TYPES, required=True
            ),
            arg(
                "",
                "Write to",
                "the converted file",
                name="destination",
                path="save_file",
                file_types=LORA_TYPES,
                required=True,
            ),
            arg(
                "--format",
                "Layout",
                "comfyui, diffusers or kohya key names",
                choices=("comfyui", "diffusers", "kohya"),
                required=True,
                default="comfyui",
            ),
            arg("--dtype", "Dtype", "dtype of the written weights", choices=DTYPES),
            arg("--model", "Check against model", "a diffusers model folder the LoRA must fit", path="folder"),
        ),
        "A LoRA between the ComfyUI, diffusers and kohya layouts (DoRA / LoHa / LoKr keep ComfyUI's).",
    ),  # fmt: skip
    Tool(
        "Model to single file",
        "convert_model.py",
        ("to-single-file",),
        (
            arg("", "Diffusers folder", "the model folder", name="source", path="folder", required=True),
            arg(
                "",
                "Write to",
                "one safetensors file with the original WAN names (what ComfyUI loads)",
                name="destination",
                path="save_file",
                file_types=WEIGHT_TYPES,
                required=True,
            ),
            arg("--expert", "Expert", "A14B: which transformer", choices=EXPERTS),
            arg("--dtype", "Dtype", "dtype of the written weights", choices=DTYPES),
        ),
        "A diffusers model folder's transformer as one single file with original WAN key names.",
    ),  # fmt: skip
    Tool(
        "Single file to diffusers",
        "convert_model.py",
        ("to-diffusers",),
        (
            arg(
                "",
                "Single file",
                "a transformer .safetensors",
                name="source",
                path="file",
                file_types=WEIGHT_TYPES,
                required=True,
            ),
            arg(
                "", "Write to folder", "the diffusers folder written", name="destination", path="folder", required=True
            ),
            arg(
                "--base",
                "Base folder",
                "a diffusers folder giving the config and the other parts",
                path="folder",
                required=True,
            ),
            arg("--expert", "Expert", "A14B: which transformer", choices=EXPERTS),
            arg("--dtype", "Dtype", "dtype of the written weights", choices=DTYPES),
        ),
        "A single transformer file into a diffusers folder (the other parts from a base folder).",
    ),  # fmt: skip
)


def tool_named(title: str) -> Tool:
    return next(tool for tool in TOOLS if tool.title == title)
