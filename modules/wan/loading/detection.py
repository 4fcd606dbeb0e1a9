"""Which WAN 2.2 model a diffusers folder holds, decided from its JSON configs alone.

Detection looks only at structure (channel counts, VAE kind, experts, pipeline class, flags), never at
widths or depths, so the tiny test models are detected exactly like the real checkpoints. It reads no
weights, so it is instant and can run before anything heavy is loaded; a folder whose parts do not fit
together is refused here with a message that says which part is wrong and how to fix it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modules.base.model_loader import ModelLoadError
from modules.wan.variants import (
    I2V_A14B,
    T2V_A14B,
    TI2V_5B,
    VARIANTS,
    WanVariant,
    check_expected_variant,
    check_variant_name,
    variant_for_in_channels,
)

WAN22_PIPELINES = {"WanPipeline": "text-to-video", "WanImageToVideoPipeline": "image-to-video"}
TRANSFORMER_CLASS = "WanTransformer3DModel"
VAE_CLASS = "AutoencoderKLWan"
_REPOS = ", ".join(v.real_repo_id for v in VARIANTS.values())


def read_json(path: Path) -> dict[str, Any] | None:
    """The parsed file, None if it does not exist; a broken file is an error (it hides the structure)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(
            f"{path}: cannot read this JSON file ({error}). Expected a valid diffusers config. "
            "Fix: re-download or restore this file."
        ) from error
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{path}: expected a JSON object, found {type(data).__name__}. Fix: re-download this file."
        )
    return data


def _listed(model_index: dict[str, Any], component: str) -> str | None:
    """The class name model_index.json gives a component, or None when absent or [null, null]."""
    entry = model_index.get(component)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None:
        return str(entry[1])
    return None


def describe_model_folder(path: Path | str) -> dict[str, Any]:
    """What the folder holds, as far as the JSON configs tell (missing things are None); used in messages."""
    path = Path(path)
    found: dict[str, Any] = {"path": str(path), "exists": path.exists(), "is_dir": path.is_dir()}
    if not path.is_dir():
        return found
    found["subfolders"] = sorted(p.name for p in path.iterdir() if p.is_dir())
    model_index = read_json(path / "model_index.json")
    found["has_model_index"] = model_index is not None
    if model_index is None:
        return found
    found["pipeline"] = model_index.get("_class_name")
    found["components"] = {
        k: _listed(model_index, k)
        for k, v in sorted(model_index.items())
        if not k.startswith("_") and isinstance(v, list)
    }
    found["boundary_ratio"] = model_index.get("boundary_ratio")
    found["expand_timesteps"] = model_index.get("expand_timesteps")
    for part in ("transformer", "transformer_2"):
        config = read_json(path / part / "config.json")
        found[part] = (
            None
            if config is None
            else {
                "class": config.get("_class_name"),
                "in_channels": config.get("in_channels"),
                "out_channels": config.get("out_channels"),
                "image_dim": config.get("image_dim"),
            }
        )
    vae = read_json(path / "vae" / "config.json")
    found["vae"] = (
        None
        if vae is None
        else {
            "class": vae.get("_class_name"),
            "z_dim": vae.get("z_dim"),
            "is_residual": vae.get("is_residual", False),
            "patch_size": vae.get("patch_size"),
        }
    )
    return found


def _nested_hint(path: Path) -> str | None:
    """Users often point one level too high (at a folder of models); name the candidates."""
    inner = sorted(str(p.parent) for p in path.glob("*/model_index.json"))
    return f"point to the model folder itself, e.g. {inner[0]}" if inner else None


def summarize(found: dict[str, Any]) -> str:
    """One line of the facts that decide the variant, for error messages."""
    if not found.get("exists"):
        return "nothing at this path"
    if not found.get("is_dir"):
        return "a file, not a folder"
    if not found.get("has_model_index"):
        return f"a folder without model_index.json (subfolders: {', '.join(found['subfolders']) or 'none'})"
    bits = [f"pipeline {found.get('pipeline')}"]
    for part in ("transformer", "transformer_2"):
        info = found.get(part)
        listed = (found.get("components") or {}).get(part)
        if info is None:
            bits.append(f"{part}: {'listed in model_index.json but no config on disk' if listed else 'none'}")
        else:
            bits.append(f"{part}: {info['class']} in/out channels {info['in_channels']}/{info['out_channels']}")
    vae = found.get("vae")
    if vae is None:
        bits.append("vae: none")
    else:
        kind = "Wan2.2 VAE" if vae["is_residual"] else "Wan2.1 VAE"
        bits.append(f"vae: {vae['class']} z_dim {vae['z_dim']} ({kind}, patch_size {vae['patch_size']})")
    bits.append(f"boundary_ratio {found.get('boundary_ratio')}, expand_timesteps {found.get('expand_timesteps')}")
    return "; ".join(bits)


def _fail(path: Path, problem: str, found: dict[str, Any], expected: str, fix: str) -> ModelLoadError:
    # One shape for every message: where, what is wrong, what we saw, what we wanted, what to do.
    return ModelLoadError(f"{path}: {problem}. Found: {summarize(found)}. Expected: {expected}. Fix: {fix}")


def detect_variant(model_path: Path | str, expected_variant: str | None = None) -> WanVariant:
    """The WAN 2.2 variant of a diffusers folder, or ModelLoadError saying what does not fit.

    `expected_variant` (a name from VARIANTS, or None/"auto") must match what the folder holds.
    """
    path = Path(model_path)
    found = describe_model_folder(path)
    check_variant_name(expected_variant, str(path))
    _check_folder_shape(path, found)
    _check_part_classes(path, found)
    variant = _structure(path, found)
    check_expected_variant(variant, expected_variant, str(path), "the folder", summarize(found))
    return variant


def _check_folder_shape(path: Path, found: dict[str, Any]) -> None:
    """An existing folder with model_index.json (users often point at a file or one level too high)."""
    if not found["exists"]:
        raise _fail(
            path,
            "the model folder does not exist",
            found,
            "a diffusers folder of a WAN 2.2 model",
            f"check the path, or give a hub id ({_REPOS})",
        )
    if not found["is_dir"]:
        raise _fail(
            path,
            "this is a single file, not a diffusers folder",
            found,
            "a diffusers folder (model_index.json plus transformer/, vae/, text_encoder/, tokenizer/, scheduler/)",
            f"point to the folder of a diffusers repo such as {TI2V_5B.real_repo_id}; single-file checkpoints are not "
            f"supported",
        )
    if not found["has_model_index"]:
        raise _fail(
            path,
            "not a diffusers model folder (no model_index.json)",
            found,
            "model_index.json plus transformer/, vae/, text_encoder/, tokenizer/, scheduler/",
            _nested_hint(path)
            or f"download a diffusers repo ({_REPOS}) or point to the folder that holds model_index.json",
        )


def _check_part_classes(path: Path, found: dict[str, Any]) -> None:
    """A WAN 2.2 pipeline with WAN transformer and VAE classes; other families are refused first."""
    pipeline = found["pipeline"]
    listed = found["components"]
    transformer = found["transformer"]
    # Other families first: their structure means nothing to the WAN rules below.
    if not (isinstance(pipeline, str) and pipeline.startswith("Wan")):
        raise _fail(
            path,
            f"this is not a WAN model (pipeline {pipeline})",
            found,
            f"a WAN 2.2 pipeline ({' or '.join(WAN22_PIPELINES)})",
            f"use a WAN 2.2 diffusers folder ({_REPOS})",
        )
    if pipeline not in WAN22_PIPELINES:
        raise _fail(
            path,
            f"{pipeline} is a WAN pipeline this trainer does not support",
            found,
            f"{' or '.join(WAN22_PIPELINES)}",
            f"use a WAN 2.2 T2V, I2V or TI2V diffusers folder ({_REPOS})",
        )
    if transformer is None:
        raise _fail(
            path,
            "transformer/config.json is missing",
            found,
            f"transformer/ with a {TRANSFORMER_CLASS} config",
            "re-download the transformer/ folder of this model",
        )
    for part in ("transformer", "transformer_2"):
        info = found[part]
        classes = {listed.get(part), None if info is None else info["class"]} - {None}
        if classes - {TRANSFORMER_CLASS}:
            raise _fail(
                path,
                f"{part} is {', '.join(sorted(classes - {TRANSFORMER_CLASS}))}, not a WAN 2.2 transformer",
                found,
                f"{TRANSFORMER_CLASS}",
                f"use a WAN 2.2 diffusers folder ({_REPOS}); VACE/Animate models are not supported",
            )
    if found["vae"] is None:
        raise _fail(
            path,
            "vae/config.json is missing",
            found,
            f"vae/ with an {VAE_CLASS} config",
            "copy vae/ from the diffusers repo of this model",
        )
    if found["vae"]["class"] != VAE_CLASS:
        raise _fail(
            path,
            f"vae is {found['vae']['class']}, not the WAN VAE",
            found,
            VAE_CLASS,
            "copy vae/ from the diffusers repo of this model",
        )


def _structure(path: Path, found: dict[str, Any]) -> WanVariant:
    """The variant from channels, VAE kind, experts and flags, checking that every part agrees."""
    pipeline = found["pipeline"]
    t1 = found["transformer"]
    in_ch, out_ch = t1["in_channels"], t1["out_channels"]
    t2_listed = found["components"].get("transformer_2") is not None
    t2_on_disk = (path / "transformer_2").is_dir()
    boundary = found["boundary_ratio"]
    wan21_fix = (
        f"WAN 2.2 is needed: download {T2V_A14B.real_repo_id}, {I2V_A14B.real_repo_id} or {TI2V_5B.real_repo_id}"
    )

    # WAN 2.1 I2V/FLF2V condition on CLIP image features; WAN 2.2 does not.
    if found["components"].get("image_encoder") is not None or t1.get("image_dim") is not None:
        raise _fail(
            path,
            "this is a WAN 2.1 model (it has a CLIP image_encoder / transformer image_dim)",
            found,
            "a WAN 2.2 model (no image encoder)",
            wan21_fix,
        )

    by_channels = variant_for_in_channels(in_ch)
    if by_channels is TI2V_5B:
        variant = TI2V_5B
        if t2_listed or t2_on_disk or boundary is not None:
            raise _fail(
                path,
                "a TI2V-5B transformer (48 channels) next to a second expert / boundary_ratio",
                found,
                "TI2V-5B has one transformer and boundary_ratio null",
                "remove transformer_2 and boundary_ratio, or use an A14B folder",
            )
        if pipeline != "WanPipeline":
            raise _fail(
                path,
                f"TI2V-5B transformer in a {pipeline} folder",
                found,
                "pipeline WanPipeline for TI2V-5B",
                f"set _class_name to WanPipeline in model_index.json or re-download {TI2V_5B.real_repo_id}",
            )
        if found["expand_timesteps"] is not True:
            raise _fail(
                path,
                "TI2V-5B folder with expand_timesteps not true",
                found,
                "expand_timesteps: true (one timestep per latent token)",
                f"set \"expand_timesteps\": true in model_index.json or re-download {TI2V_5B.real_repo_id}",
            )
    elif by_channels is not None:
        variant = _a14b_variant(path, found, by_channels, wan21_fix)
    else:
        raise _fail(
            path,
            f"transformer in_channels {in_ch} fits no WAN 2.2 model",
            found,
            "in_channels 48 (TI2V-5B), 16 (T2V-A14B) or 36 (I2V-A14B)",
            f"use a WAN 2.2 diffusers folder ({_REPOS})",
        )

    if out_ch != variant.transformer_out_channels:
        raise _fail(
            path,
            f"transformer out_channels {out_ch} does not fit {variant.name}",
            found,
            f"out_channels {variant.transformer_out_channels}",
            f"re-download transformer/ of {variant.real_repo_id}",
        )
    _check_vae_kind(path, found, variant)
    return variant


def _a14b_variant(path: Path, found: dict[str, Any], by_channels: WanVariant, wan21_fix: str) -> WanVariant:
    """T2V-A14B or I2V-A14B: two experts of one model, the matching pipeline, boundary and flags."""
    pipeline, t2 = found["pipeline"], found["transformer_2"]
    in_ch, out_ch = found["transformer"]["in_channels"], found["transformer"]["out_channels"]
    t2_listed = found["components"].get("transformer_2") is not None
    t2_on_disk = (path / "transformer_2").is_dir()
    boundary = found["boundary_ratio"]
    if not (t2_listed or t2_on_disk or boundary is not None):
        kind = "T2V" if in_ch == 16 else "I2V"
        raise _fail(
            path,
            f"this is a WAN 2.1 {kind} model (a single {in_ch}-channel transformer, no transformer_2, "
            "no boundary_ratio)",
            found,
            "a WAN 2.2 model",
            wan21_fix,
        )
    variant = by_channels
    wanted_pipeline = "WanImageToVideoPipeline" if variant is I2V_A14B else "WanPipeline"
    if pipeline != wanted_pipeline:
        which = "an I2V transformer (36 in-channels)" if variant is I2V_A14B else "a T2V transformer (16 in-channels)"
        folder_kind = T2V_A14B if pipeline == "WanPipeline" else I2V_A14B
        raise _fail(
            path,
            f"mismatched parts: {which} in a {pipeline} ({WAN22_PIPELINES[pipeline]}) folder",
            found,
            f"{wanted_pipeline} for a {variant.transformer_in_channels}-channel transformer, "
            f"or a {folder_kind.transformer_in_channels}-channel transformer in {pipeline}",
            f"take transformer/ and transformer_2/ from {folder_kind.real_repo_id}, "
            f"or use the whole {variant.real_repo_id} folder",
        )
    if not t2_on_disk or t2 is None:
        why = "model_index.json lists transformer_2" if t2_listed else f"boundary_ratio is {boundary}"
        raise _fail(
            path,
            f"the transformer_2 folder (low-noise expert) is missing though {why}",
            found,
            f"transformer_2/ with config.json and weights ({variant.name} has two experts)",
            f"download transformer_2/ of {variant.real_repo_id} into this folder",
        )
    if not t2_listed:
        raise _fail(
            path,
            "transformer_2/ is on disk but model_index.json does not list it",
            found,
            "\"transformer_2\": [\"diffusers\", \"WanTransformer3DModel\"] in model_index.json",
            f"add that entry to model_index.json or re-download {variant.real_repo_id}",
        )
    if (t2["in_channels"], t2["out_channels"]) != (in_ch, out_ch):
        raise _fail(
            path,
            "mismatched parts: transformer and transformer_2 have different channels "
            f"({in_ch}/{out_ch} vs {t2['in_channels']}/{t2['out_channels']})",
            found,
            "both experts of the same model",
            f"take transformer/ and transformer_2/ from {variant.real_repo_id}",
        )
    if boundary is None:
        raise _fail(
            path,
            "two experts but no boundary_ratio",
            found,
            f"boundary_ratio {variant.boundary_ratio} for {variant.name}",
            f"set \"boundary_ratio\": {variant.boundary_ratio} in model_index.json",
        )
    if boundary != variant.boundary_ratio:
        # A reused T2V boundary (0.875) on I2V is a known mistake of other trainers: refuse it.
        raise _fail(
            path,
            f"boundary_ratio {boundary} is not the {variant.name} value",
            found,
            f"boundary_ratio {variant.boundary_ratio}",
            f"set \"boundary_ratio\": {variant.boundary_ratio} in model_index.json",
        )
    if found["expand_timesteps"]:
        raise _fail(
            path,
            f"expand_timesteps is true in a {variant.name} folder",
            found,
            "expand_timesteps false (it is a TI2V-5B feature)",
            "set \"expand_timesteps\": false in model_index.json",
        )
    return variant


def _check_vae_kind(path: Path, found: dict[str, Any], variant: WanVariant) -> None:
    """The VAE must be the one of the variant: Wan2.2 (z_dim 48) for TI2V-5B, Wan2.1 (z_dim 16) for A14B."""
    vae, in_ch = found["vae"], found["transformer"]["in_channels"]
    wan22_vae = variant.latent_channels == 48
    vae_patch = vae["patch_size"] or 1
    if (
        vae["z_dim"] != variant.latent_channels
        or bool(vae["is_residual"]) != wan22_vae
        or (vae_patch == 2) != wan22_vae
    ):
        vae_name = "the Wan2.2 VAE (z_dim 48, is_residual, patch_size 2)" if wan22_vae else "the Wan2.1 VAE (z_dim 16)"
        raise _fail(
            path,
            f"mismatched parts: the VAE (z_dim {vae['z_dim']}) does not fit the {variant.name} transformer "
            f"({in_ch} in-channels)",
            found,
            f"{vae_name} for {variant.name}",
            f"copy vae/ from {variant.real_repo_id}",
        )
