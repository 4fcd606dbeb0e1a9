"""Convert WAN 2.2 LoRAs and full transformers between the supported formats.

    # LoRA: ComfyUI layout (original WAN names) <-> diffusers/PEFT layout, either direction (read from the keys);
    # DoRA / LoHa / LoKr files stay in the ComfyUI layout (e.g. to change --dtype), their settings kept
    python scripts/convert_model.py lora in.safetensors out.safetensors --format diffusers [--dtype bfloat16]
    # ... and check first that it is a LoRA for this model (its spec and shapes; --allow-other-model overrides)
    python scripts/convert_model.py lora in.safetensors out.safetensors --format comfyui --model path/to/model-folder

    # full model: diffusers folder -> one single file with original WAN names (what ComfyUI loads)
    python scripts/convert_model.py to-single-file path/to/model-folder out.safetensors
        [--expert transformer_2] [--dtype float16]

    # full model: single file -> diffusers folder (the base folder supplies the config and the other parts)
    python scripts/convert_model.py to-diffusers in.safetensors out-folder --base path/to/base-folder
        [--expert transformer]

Outputs are written atomically. See docs/full_finetune.md and docs/lora_format.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _repo_path  # noqa: F401
from safetensors import safe_open

from modules.util.device import DTYPES
from modules.util.errors import run_script
from modules.wan.formats.adapter_file import read_adapter_file
from modules.wan.formats.adapter_settings import ADAPTER_KEY
from modules.wan.formats.lora_compatibility import check_lora_fits, read_lora_info
from modules.wan.formats.lora_file import (
    DIFFUSERS_ADAPTER_METADATA_KEY,
    FORMAT_KEY,
    LORA_FORMATS,
    save_lora_file,
)
from modules.wan.formats.model_files import (
    ModelFileError,
    read_single_file,
    read_transformer_folder,
    save_single_file,
    write_model_folder,
)
from modules.wan.loading.model_linears import model_folder_linears


def convert_lora(
    source: Path,
    destination: Path,
    format: str,
    dtype: str = "float32",
    model: Path | None = None,
    allow_other_model: bool = False,
) -> Path:
    read_lora_info(source)  # a missing, truncated or non-safetensors file is named before anything is read
    if model is not None:  # the LoRA must be for this model: its spec and every matrix shape are compared
        variant, linears = model_folder_linears(model)
        check_lora_fits(source, variant, linears, allow_other_model=allow_other_model, override="--allow-other-model")
    # Type, rank, alpha, DoRA and LoKr's factor as recorded in the file (or inferred from an older one).
    settings, state_dict, metadata = read_adapter_file(source)
    # Training metadata travels along; layout- and adapter-specific entries are rewritten by the saver.
    rewritten = (FORMAT_KEY, DIFFUSERS_ADAPTER_METADATA_KEY, ADAPTER_KEY, "format")
    kept = {k: v for k, v in metadata.items() if k not in rewritten}
    return save_lora_file(
        state_dict,
        destination,
        format=format,
        rank=settings.rank,
        alpha=settings.alpha,
        metadata=kept,
        dtype=dtype,
        kind=settings.type,
        factor=settings.factor,
    )


def _transformer_folder(path: Path, expert: str) -> Path:
    """A model folder's expert subfolder, or `path` itself when it is a transformer folder."""
    return path / expert if (path / "model_index.json").is_file() else path


def folder_to_single_file(
    source: Path, destination: Path, expert: str = "transformer", dtype: str = "bfloat16"
) -> Path:
    folder = _transformer_folder(source, expert)
    state_dict, _ = read_transformer_folder(folder)
    try:
        return save_single_file(state_dict, destination, dtype)
    except (KeyError, ValueError) as error:  # a weight name the key map does not know: not a WAN transformer
        raise ModelFileError(
            f"{folder}: not a WAN 2.2 transformer folder ({error}). Fix: give a diffusers WAN 2.2 model folder or "
            "its transformer/ or transformer_2/ subfolder."
        ) from None


def single_file_to_folder(
    source: Path, destination: Path, base: Path, expert: str = "transformer", dtype: str = "bfloat16"
) -> Path:
    state_dict = read_single_file(source)
    base_folder = base / expert
    # Only the base's config and weight names are needed, not its weights: read headers only.
    names: set[str] = set()
    for shard in sorted(base_folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as file:
            names.update(file.keys())
    config_path = base_folder / "config.json"
    if not config_path.is_file() or not names:
        raise ModelFileError(f"{base_folder}: --base must be a diffusers model folder with a {expert}/ subfolder")
    if set(state_dict) != names:
        missing, extra = sorted(names - set(state_dict)), sorted(set(state_dict) - names)
        raise ModelFileError(
            f"{source}: its weights do not match {base_folder} (missing {missing[:3]}, extra {extra[:3]}). "
            "Fix: give --base a folder of the same WAN 2.2 variant, and --expert the expert this file holds."
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return write_model_folder(base, destination, {expert: (state_dict, config)}, dtype)


def convert(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lora = commands.add_parser("lora", help="convert a LoRA file between the ComfyUI and diffusers layouts")
    lora.add_argument("source", type=Path)
    lora.add_argument("destination", type=Path)
    lora.add_argument("--format", choices=LORA_FORMATS, required=True)
    lora.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    lora.add_argument("--model", type=Path, help="a diffusers model folder the LoRA must fit (checked before writing)")
    lora.add_argument("--allow-other-model", action="store_true", help="convert even if --model is another model")
    single = commands.add_parser("to-single-file", help="diffusers folder -> single file with original WAN names")
    single.add_argument("source", type=Path)
    single.add_argument("destination", type=Path)
    single.add_argument("--expert", choices=("transformer", "transformer_2"), default="transformer")
    single.add_argument("--dtype", choices=tuple(DTYPES), default="bfloat16")
    folder = commands.add_parser("to-diffusers", help="single file -> diffusers folder (other parts from --base)")
    folder.add_argument("source", type=Path)
    folder.add_argument("destination", type=Path)
    folder.add_argument("--base", type=Path, required=True)
    folder.add_argument("--expert", choices=("transformer", "transformer_2"), default="transformer")
    folder.add_argument("--dtype", choices=tuple(DTYPES), default="bfloat16")
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(f"error: {args.source}: no such file or folder. Fix: check the source path.", file=sys.stderr)
        return 2
    if args.command == "lora":
        written = convert_lora(
            args.source, args.destination, args.format, args.dtype, args.model, args.allow_other_model
        )
    elif args.command == "to-single-file":
        written = folder_to_single_file(args.source, args.destination, args.expert, args.dtype)
    else:
        written = single_file_to_folder(args.source, args.destination, args.base, args.expert, args.dtype)
    print(f"written: {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The exit code: 0 written, 2 a file or option the message names (every UserError, through run_script)."""
    return run_script(convert, argv)


if __name__ == "__main__":
    sys.exit(main())
