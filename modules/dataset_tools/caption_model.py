"""Loading a vision-language captioner: the Qwen2.5-VL / Qwen3-VL class named by the checkpoint's config.

Local folder or the Hugging Face cache only, unless the user allows a download; never remote code. Optional
8-bit / 4-bit weights through bitsandbytes (CUDA only) for small cards.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modules.dataset_tools.qwen_vl_inputs import QwenVLInputs, read_chat_template
from modules.dataset_tools.qwen_vl_patches import VisionGrid
from modules.util.errors import UserError

# config.model_type -> transformers class; a type the installed transformers lacks is reported, not guessed.
MODEL_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
}


class CaptionModelError(UserError):
    """The captioning model cannot be loaded; the message names it and the fix."""


def load_captioner(source: str, allow_download: bool, quantize: str, device: str, dtype: str):
    """(model, input builder, device) ready for generate(); the input side first, as it fails fastest."""
    # An unsupported model is named before anything else is read; the class's config names the family.
    model_class = model_class_for(source, allow_download)
    inputs = load_inputs(source, allow_download, model_class.config_class.model_type)
    model, target = load_model(source, allow_download, quantize, device, dtype)
    return model, inputs, target


def _checkpoint_file(source: str, name: str, allow_download: bool) -> Path | None:
    """A file of the checkpoint (local folder or hub cache; fetched only when downloads are allowed)."""
    from transformers.utils import cached_file

    try:
        found = cached_file(
            source, name, local_files_only=not allow_download, _raise_exceptions_for_missing_entries=False
        )
    except OSError:
        return None
    return Path(found) if found else None


def load_inputs(source: str, allow_download: bool, model_type: str) -> QwenVLInputs:
    """The checkpoint's tokenizer, chat template and vision settings (qwen_vl_inputs.py: no torchvision)."""
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            source, local_files_only=not allow_download, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise CaptionModelError(f"{source}: cannot load the tokenizer ({error}). Fix: {_fix(source)}.") from None
    names = ("preprocessor_config.json", "video_preprocessor_config.json", "chat_template.jinja", "chat_template.json")
    files = {name: _checkpoint_file(source, name, allow_download) for name in names}
    if files["preprocessor_config.json"] is None:
        raise CaptionModelError(
            f"{source}: no preprocessor_config.json (the vision input settings). Fix: {_fix(source)}."
        )
    template = read_chat_template(files, tokenizer)
    if not template:
        raise CaptionModelError(
            f"{source}: no chat template (chat_template.jinja, chat_template.json or the tokenizer's). "
            "Fix: use an instruct (chat) checkpoint, which ships one."
        )
    image_grid = VisionGrid.from_file(files["preprocessor_config.json"])
    video_file = files["video_preprocessor_config.json"] or files["preprocessor_config.json"]
    video_grid = VisionGrid.from_file(video_file, budget_per_clip=model_type == "qwen3_vl")
    return QwenVLInputs(tokenizer, template, model_type, image_grid, video_grid)


def read_model_type(source: str, allow_download: bool) -> str:
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(
            source, local_files_only=not allow_download, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise CaptionModelError(f"{source}: cannot read the model config ({error}). Fix: {_fix(source)}.") from None
    return config.model_type


def model_class_for(source: str, allow_download: bool):
    """The transformers class named by the checkpoint's config.json model_type."""
    import transformers

    model_type = read_model_type(source, allow_download)
    class_name = MODEL_CLASSES.get(model_type)
    model_class = getattr(transformers, class_name, None) if class_name else None
    if model_class is None:
        known = ", ".join(MODEL_CLASSES)
        raise CaptionModelError(
            f"{source}: model_type {model_type!r} is not a supported captioner with transformers "
            f"{transformers.__version__} (supported: {known}). Fix: use a Qwen2.5-VL or Qwen3-VL checkpoint"
            + (" or a newer transformers." if class_name else ".")
        )
    return model_class


def load_model(source: str, allow_download: bool, quantize: str = "none", device: str = "auto", dtype: str = "auto"):
    """(model in eval mode, its device)."""
    import transformers

    model_class = model_class_for(source, allow_download)
    target = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    kwargs = dict(local_files_only=not allow_download, trust_remote_code=False)
    if quantize != "none":
        if target.type != "cuda":
            raise CaptionModelError(
                f"--quantize {quantize}: bitsandbytes' 8/4-bit weights need a CUDA GPU (device is {target}). "
                "Fix: run on a GPU or use --quantize none."
            )
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_8bit=quantize == "8bit",
            load_in_4bit=quantize == "4bit",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": target.index or 0}
    if dtype == "auto":
        dtype = "bfloat16" if target.type == "cuda" else "float32"
    kwargs["dtype"] = getattr(torch, dtype)
    try:
        model = model_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise CaptionModelError(f"{source}: cannot load the {model_class.__name__} weights ({error}).") from None
    if quantize == "none":
        model.to(target)
    return model.eval(), target


def _fix(source: str) -> str:
    if Path(source).exists():
        return "the folder must hold a transformers checkpoint (config.json, weights, processor and tokenizer files)"
    return "pass a local checkpoint folder, or add --allow-download to fetch it from the Hugging Face hub"
