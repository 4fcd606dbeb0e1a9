"""The `memory` section: where weights and activations live when the accelerator is too small for all of them.

Block swapping, activation offloading and the text phase on the CPU are declared here; the quantised and fp8
storage dtypes are `model.transformer_dtype` / `model.text_encoder_dtype`. How each works: docs/block_swap.md.
`check_memory` holds the rules that involve other sections; the file loader calls it before any weight is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.config.fields import setting
from modules.config.validation import ConfigError

QUANTISED_DTYPES = ("int8", "nf4")  # bitsandbytes storage of the block linears (modules/module/bnb_linear.py)


@dataclass
class MemoryConfig:
    blocks_to_swap: int = setting(
        0,
        help=(
            "Transformer blocks (the last N) whose frozen weights stay in CPU memory and are copied to the "
            "GPU just before they run, overlapping compute; LoRA adapters and trained weights stay on the "
            "GPU (0: off; see docs/block_swap.md)"
        ),
        min=0,
        label="Blocks swapped to CPU",
    )
    offload_activations: bool = setting(
        False,
        help=(
            "Keep each checkpointed block input in CPU memory instead of GPU memory until the backward pass "
            "(for long clips; needs training.gradient_checkpointing)"
        ),
        label="Offload activations to CPU",
    )
    text_encoder_on_cpu: bool = setting(
        False,
        help=(
            "Run UMT5 on the CPU for caching captions and for the prompts of samples, so the text encoder "
            "never takes GPU memory (slower text phase)"
        ),
        label="Text encoder on CPU",
    )
    map_weights: bool = setting(
        True,
        help=(
            "Where the transformer is kept in the dtype its safetensors file stores (an fp8_scaled file into fp8 "
            "storage, bf16 into bf16), weights in CPU memory (the inactive expert, swapped blocks) are the file's "
            "memory mapping instead of copies: processes on one machine share them and the kernel can drop and "
            "re-read them; off: every weight is read into the process's own memory (see docs/block_swap.md)"
        ),
        label="Map weights from their file",
    )
    vae_tiling: str = setting(
        "auto",
        help="Encode and decode video in overlapping spatial tiles (diffusers' AutoencoderKLWan tiling); 'auto': "
        "only where the memory planner says the untiled pass does not fit the GPU",
        choices=("auto", "on", "off"),
        label="VAE tiling",
    )


def check_memory(config) -> None:
    """Combinations that cannot work, refused before loading, each with the setting that fixes it."""
    # A config may be a bare object with a model section (tests, scripts): the defaults apply then.
    memory, model = getattr(config, "memory", None) or MemoryConfig(), config.model
    if memory.offload_activations and not config.training.gradient_checkpointing:
        raise ConfigError(
            "memory.offload_activations: keeps the inputs of checkpointed blocks in CPU memory, but "
            "training.gradient_checkpointing is off. Fix: set training.gradient_checkpointing to true, or "
            "memory.offload_activations to false."
        )
    compile_mode = getattr(config.training, "compile", "none") if hasattr(config, "training") else "none"
    if memory.blocks_to_swap and compile_mode != "none":
        raise ConfigError(
            f"memory.blocks_to_swap: block swapping hooks into every block call to move its weights, which "
            f"training.compile {compile_mode!r} would trace into the compiled code. Fix: set training.compile to "
            "none, or memory.blocks_to_swap to 0."
        )
    if model.transformer_dtype in QUANTISED_DTYPES:
        if config.training_method == "full":
            raise ConfigError(
                f"model.transformer_dtype: {model.transformer_dtype} stores frozen weights only, and training_method "
                "'full' trains the expert's own weights. Fix: set model.transformer_dtype to bfloat16, or train a LoRA."
            )
        if memory.blocks_to_swap:
            raise ConfigError(
                f"memory.blocks_to_swap: bitsandbytes' {model.transformer_dtype} weights keep their quantisation "
                "state beside the weight tensor, which block swapping does not move. Fix: use "
                "model.transformer_dtype float8_e4m3fn with block swapping, or set memory.blocks_to_swap to 0."
            )
