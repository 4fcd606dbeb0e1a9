"""Each configured WAN part as detection sees it (variant, storage dtype, key naming, expert), for the
diagnostics report (the trainer's diagnostics.py, reached through modules/registry.py). Reads JSON configs
and safetensors headers only; a part that cannot be detected is reported with the loader's own message, never raised."""

from __future__ import annotations

from pathlib import Path

from modules.wan.loading.sources import PART_SETTINGS

EXPERTS = {"transformer": "high_noise", "transformer_2": "low_noise"}
_DTYPE_NAMES = {"F32": "fp32", "BF16": "bf16", "F16": "fp16", "F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2"}


def _setting(config, part: str) -> str:
    return getattr(config.model, PART_SETTINGS[part].split(".", 1)[1], "")


def _folder_dtype(folder: Path) -> str | None:
    from modules.wan.formats.headers import read_header

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    header = read_header(files[0], "weights")
    counts: dict[str, int] = {}
    for info in header.tensors.values():
        counts[info.dtype] = counts.get(info.dtype, 0) + 1
    code = max(counts, key=counts.get) if counts else None
    return _DTYPE_NAMES.get(code, code)


def _describe_file(path: Path, part: str) -> dict:
    from modules.wan.loading.file_detection import detect_single_file

    info = detect_single_file(path, part.replace("_2", ""))
    return {
        "kind": "single file",
        "detected_part": info.part,
        "variant": info.variant.name if info.variant else None,
        "dtype": info.dtype + (" scaled" if info.fp8_scaled else ""),
        "naming": info.naming,
        "expert": info.expert,
    }


def _describe_folder(folder: Path, part: str, variant: str | None) -> dict:
    from modules.wan.loading.detection import read_json

    config = read_json(folder / "config.json") or {}
    return {
        "kind": "diffusers folder",
        "detected_part": part.replace("_2", ""),
        "class": config.get("_class_name") or (config.get("architectures") or [None])[0],
        "variant": variant if part.startswith("transformer") else None,
        "dtype": _folder_dtype(folder),
        "naming": "diffusers",
        "expert": EXPERTS.get(part) if variant and variant != "TI2V-5B" else None,
    }


def describe_parts(config) -> list[dict]:
    """One entry per part: where it comes from and what it is; `error` holds why it could not be detected."""
    from modules.wan.loading.hub import resolve_model_path

    model = config.model
    base, base_error, variant = None, None, None
    if model.base_path:
        try:
            base = resolve_model_path(model.base_path, allow_download=False)
            if (base / "model_index.json").is_file() and (base / "transformer" / "config.json").is_file():
                from modules.wan.loading.detection import detect_variant

                variant = detect_variant(base).name
        except Exception as error:  # noqa: BLE001 - a report states the problem instead of failing
            base_error = str(error)
    parts = []
    for part in PART_SETTINGS:
        entry: dict = {"part": part, "setting": PART_SETTINGS[part], "source": None}
        given = _setting(config, part)
        try:
            if given:
                path = resolve_model_path(given, allow_download=False, part=part)
                entry["source"] = str(path)
                if path.is_file():
                    entry.update(_describe_file(path, part))
                else:
                    folder = path / part if (path / "model_index.json").is_file() else path
                    entry.update(_describe_folder(folder, part, variant))
            elif base is not None and (base / part / "config.json").is_file():
                entry["source"] = str(base / part)
                entry.update(_describe_folder(base / part, part, variant))
            elif part == "transformer_2" and variant == "TI2V-5B":
                continue  # TI2V-5B has one transformer
            else:
                entry["error"] = base_error or f"not found: set model.base_path or {PART_SETTINGS[part]}"
        except Exception as error:  # noqa: BLE001
            entry["error"] = str(error)
        parts.append(entry)
    return parts
