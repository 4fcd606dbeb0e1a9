"""Loading a vision-language captioner: the Qwen2.5-VL / Qwen3-VL class named by the checkpoint's config.

Local folder or the Hugging Face cache only, unless the user allows a download; never remote code. Optional
8-bit / 4-bit weights through bitsandbytes (CUDA only) for small cards.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    """(model, processor, device) ready for generate()."""
    import transformers

    local_only = not allow_download
    where = {"local_files_only": local_only, "trust_remote_code": False}
    try:
        config = transformers.AutoConfig.from_pretrained(source, **where)
    except (OSError, ValueError) as error:
        hint = "pass a local checkpoint folder, or add --allow-download to fetch it from the hub"
        if Path(source).exists():
            hint = "the folder must hold a transformers checkpoint (config.json, weights, processor files)"
        raise CaptionModelError(f"{source}: cannot read the model config ({error}). Fix: {hint}.") from None
    class_name = MODEL_CLASSES.get(config.model_type)
    model_class = getattr(transformers, class_name, None) if class_name else None
    if model_class is None:
        known = ", ".join(MODEL_CLASSES)
        raise CaptionModelError(
            f"{source}: model_type {config.model_type!r} is not a supported captioner with transformers "
            f"{transformers.__version__} (supported: {known}). Fix: use a Qwen2.5-VL or Qwen3-VL checkpoint"
            + (" or a newer transformers." if class_name else ".")
        )
    target = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    kwargs = dict(where)
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
        processor = transformers.AutoProcessor.from_pretrained(source, **where)
    except (OSError, ValueError, ImportError) as error:
        raise CaptionModelError(f"{source}: cannot load the {class_name} checkpoint ({error}).") from None
    if quantize == "none":
        model.to(target)
    processor.tokenizer.padding_side = "left"  # generation continues every row at its end
    return model.eval(), processor, target
