"""The arithmetic of each phase of a run: what is on the GPU, in bytes, from the model's facts and the settings.

Every term is one line of the per-phase table `scripts/train.py --plan` prints; docs/presets.md gives the formulas
and what was measured. Inputs are plain numbers (RunSettings), so the GUI, the presets test and the CLI share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modules.memory.activations import backward_working_bytes, block_saved_bytes, model_saved_bytes
from modules.memory.facts import ModelFacts, TransformerFacts
from modules.memory.vae import vae_pass_bytes

GIB = 2**30
# CUDA context, cuBLAS workspaces and allocator fragmentation; a card's total memory minus this is what tensors get.
CONTEXT_BYTES = 1.5 * GIB
# Blocks whose frozen weights are on the GPU at once with block swapping: the one computing and the one being copied.
SWAP_IN_FLIGHT = 2
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Bytes per block-linear weight in each storage, scales included per weight (int8: one float per row, ~0;
# nf4: bitsandbytes' double quantisation, one 8-bit absmax per 64 weights and a float32 one per 256 of those:
# 0.516, measured for an A14B expert in docs/benchmarks.md).
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
LINEAR_STORAGE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "int8": 1, "nf4": NF4_BYTES}


@dataclass
class RunSettings:
    """The settings that decide memory, read from a config by planner.settings_from_config."""

    method: str  # lora, full, embedding
    transformer_storage: str
    text_encoder_dtype: str
    vae_dtype: str
    compute_dtype: str
    lora_rank: int
    optimizer: str
    optimizer_state_bytes: float  # per trained parameter (modules/config/optimizer_state_bytes.py)
    gradient_checkpointing: bool
    batch_size: int
    resolution: int
    frames: int
    trained_experts: int  # 1 or 2
    experts_resident: int  # experts on the GPU during a step
    shared_lora: bool
    trained_fraction: float  # full fine-tuning: the share of an expert's weights that train
    full_weight_dtype: str
    ema_on_gpu: bool
    embedding_vectors: int
    blocks_to_swap: int
    offload_activations: bool
    vae_tiling: str  # auto / on / off
    text_encoder_on_cpu: bool = False  # UMT5 runs on the CPU (caching captions, prompts of samples)
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # (width, height, frames) during training


@dataclass
class Phase:
    name: str
    parts: dict[str, float]  # what is on the GPU, in bytes

    @property
    def total(self) -> float:
        return sum(self.parts.values())


def block_bytes(expert: TransformerFacts, storage: str) -> float:
    """One block's frozen weights in memory."""
    other = DTYPE_BYTES.get(storage, 2)  # norms/biases stay 16-bit next to quantised linears
    linears = expert.block_linear_params * LINEAR_STORAGE_BYTES[storage]
    scales = 4 * expert.block_linears if storage == "float8_e4m3fn" else 0
    rest = expert.block_params - expert.block_linear_params - expert.block_fp32_params
    return linears + scales + rest * other + expert.block_fp32_params * 4


def expert_bytes(expert: TransformerFacts, storage: str) -> float:
    other = DTYPE_BYTES.get(storage, 2)
    outside = expert.other_params * other + expert.other_fp32_params * 4
    return expert.num_blocks * block_bytes(expert, storage) + outside


def text_encoder_bytes(facts: ModelFacts, dtype: str) -> float:
    return facts.text_encoder.params * DTYPE_BYTES[dtype]


def text_encoder_forward_bytes(facts: ModelFacts, with_grad: bool) -> float:
    """UMT5 forward: one layer's live tensors and its attention scores; with grad, every layer's saved inputs (a
    rough estimate)."""
    t = facts.text_encoder
    one_layer = t.max_tokens * (4 * t.dim + 2 * t.ffn_dim) * 2 + t.heads * t.max_tokens**2 * 4
    if with_grad:
        return one_layer + t.layers * t.max_tokens * (16 * t.dim + 6 * t.ffn_dim)
    return one_layer


def _weights_with_swap(expert: TransformerFacts, storage: str, swap: int) -> dict[str, float]:
    swap = min(swap, expert.num_blocks)
    parts = {"transformer weights (resident)": expert_bytes(expert, storage) - swap * block_bytes(expert, storage)}
    if swap:
        parts["swapped blocks in flight"] = min(swap, SWAP_IN_FLIGHT) * block_bytes(expert, storage)
    return parts


def caching_phase(facts: ModelFacts, run: RunSettings, vae_tiled: bool) -> Phase:
    """Both encoders are on the GPU while the cache is built; the transformer is not."""
    side = run.resolution
    return Phase(
        "caching",
        {
            "UMT5 weights": 0.0 if run.text_encoder_on_cpu else text_encoder_bytes(facts, run.text_encoder_dtype),
            "VAE weights": facts.vae.params * DTYPE_BYTES[run.vae_dtype],
            "VAE encode" + (" (tiled)" if vae_tiled else ""): max(
                vae_pass_bytes(facts.vae, side, side, DTYPE_BYTES[run.vae_dtype], decode=False, tiled=vae_tiled),
                text_encoder_forward_bytes(facts, with_grad=False),
            ),
            "CUDA context and slack": CONTEXT_BYTES,
        },
    )


def _trained_state(facts: ModelFacts, run: RunSettings) -> dict[str, float]:
    expert = facts.experts[0]
    state = run.optimizer_state_bytes
    if run.method == "lora":
        lora = expert.lora_params_per_rank * run.lora_rank
        loras = 1 if run.shared_lora else run.trained_experts
        parts = {"LoRA weights + gradients + optimizer state": lora * 8 + lora * state * loras}
        if run.ema_on_gpu:
            parts["EMA copy"] = lora * 4 * loras
        return parts
    if run.method == "full":
        trained = expert.params * run.trained_fraction
        # The trained share is held in full_weight_dtype instead of its storage dtype (counted in the weights).
        extra = trained * (DTYPE_BYTES[run.full_weight_dtype] - DTYPE_BYTES.get(run.transformer_storage, 2))
        parts = {"trained weights (upcast) + gradients + optimizer state": extra + trained * (4 + state)}
        if run.ema_on_gpu:
            parts["EMA copy"] = trained * 4
        return parts
    vectors = run.embedding_vectors * facts.text_encoder.dim
    return {
        "UMT5 weights (encodes captions in every step)": text_encoder_bytes(facts, run.text_encoder_dtype),
        "UMT5 activations": text_encoder_forward_bytes(facts, with_grad=True),
        "embedding + optimizer state": vectors * (8 + state),
    }


def training_phase(facts: ModelFacts, run: RunSettings) -> Phase:
    expert = facts.experts[0]
    parts: dict[str, float] = {}
    for _ in range(run.experts_resident):
        for name, value in _weights_with_swap(expert, run.transformer_storage, run.blocks_to_swap).items():
            parts[name] = parts.get(name, 0.0) + value
    parts.update(_trained_state(facts, run))
    tokens = run.batch_size * facts.tokens_for_area(run.resolution, run.frames)
    text = run.batch_size * facts.text_encoder.max_tokens
    scale = DTYPE_BYTES[run.compute_dtype] / 2  # the formulas are for 16-bit compute
    rank = run.lora_rank if run.method == "lora" else 0
    if run.gradient_checkpointing:
        kept = model_saved_bytes(expert, tokens, text, rank, checkpointing=True) * scale
        inputs = expert.num_blocks * tokens * 2 * expert.dim * scale
        if run.offload_activations:
            kept += -inputs + SWAP_IN_FLIGHT * inputs / expert.num_blocks
            parts["activations: block inputs in flight (rest in CPU memory)"] = kept
        else:
            parts["activations: checkpointed block inputs"] = kept
        parts["activations: one block recomputed"] = block_saved_bytes(expert, tokens, text, rank) * scale
    else:
        parts["activations: every block (no checkpointing)"] = (
            model_saved_bytes(expert, tokens, text, rank, checkpointing=False) * scale
        )
    parts["gradients in flight (backward)"] = backward_working_bytes(expert, tokens) * scale
    if run.transformer_storage == "float8_e4m3fn":
        parts["fp8 upcast of one layer (forward + backward)"] = 2 * expert.largest_linear * 2
    parts["CUDA context and slack"] = CONTEXT_BYTES
    return Phase("training", parts)


def sampling_phases(facts: ModelFacts, run: RunSettings, vae_tiled: bool) -> list[Phase]:
    """In-training samples: the prompts are encoded first (experts off the GPU when offloading, else beside UMT5),
    then the expert in use denoises and the VAE decodes. Only the largest sample is planned."""
    if not run.samples:
        return []
    width, height, frames = max(run.samples, key=lambda s: facts.tokens(*s))
    expert = facts.experts[0]
    trained = _trained_state(facts, run)
    if run.method == "embedding":  # UMT5 and its activations are not kept between steps
        trained = {"embedding + optimizer state": trained["embedding + optimizer state"]}
    state = sum(trained.values())
    vae_weights = facts.vae.params * DTYPE_BYTES[run.vae_dtype]
    offloaded = len(facts.experts) > 1 and run.experts_resident == 1
    resident = {} if offloaded else _weights_with_swap(expert, run.transformer_storage, run.blocks_to_swap)
    text = {
        "UMT5 weights": 0.0 if run.text_encoder_on_cpu else text_encoder_bytes(facts, run.text_encoder_dtype),
        **resident,
        "trained state kept on the GPU": state,
        "VAE weights": vae_weights,
        "CUDA context and slack": CONTEXT_BYTES,
    }
    weights = _weights_with_swap(expert, run.transformer_storage, run.blocks_to_swap)
    tokens = facts.tokens(width, height, frames)
    denoise = {
        **weights,
        "trained state kept on the GPU": state,
        "VAE weights": vae_weights,
        "denoising activations (no grad)": tokens * (6 * expert.dim + 2 * expert.ffn_dim) * 2,
        "CUDA context and slack": CONTEXT_BYTES,
    }
    decode = {
        **weights,
        "trained state kept on the GPU": state,
        "VAE weights": vae_weights,
        "VAE decode" + (" (tiled)" if vae_tiled else ""): vae_pass_bytes(
            facts.vae, width, height, DTYPE_BYTES[run.vae_dtype], decode=True, tiled=vae_tiled
        ),
        "CUDA context and slack": CONTEXT_BYTES,
    }
    size = f"{width}x{height}x{frames}"
    return [
        Phase("sampling: prompts", text),
        Phase(f"sampling: denoise {size}", denoise),
        Phase(f"sampling: VAE decode {size}", decode),
    ]


def trained_fraction(block_filter: str, num_blocks: int) -> float:
    """Share of an expert's weights a full fine-tune trains: block indices and ranges are counted; names and
    regexes are taken as everything (an upper bound)."""
    if not block_filter.strip():
        return 1.0
    blocks: set[int] = set()
    for item in (i.strip() for i in block_filter.split(",") if i.strip()):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            return 1.0
        low, high = int(match[1]), int(match[2] or match[1])
        blocks.update(range(low, min(high, num_blocks - 1) + 1))
    return len(blocks) / num_blocks
