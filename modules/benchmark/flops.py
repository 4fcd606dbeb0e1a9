"""FLOPs of one training step of a WAN-style diffusion transformer, from its shape alone.

Counted: every matrix product (linear layers, the patch embedding as a linear over patches, and the two
attention products QK^T and AV), at 2 FLOPs per multiply-add. Not counted: norms, activations, RoPE, softmax and
other element-wise work (a few percent of the total at real sizes). docs/benchmarks.md writes the formula out.

A frozen base layer costs its forward product once more in backward (the gradient of its input) and nothing for
its weight; a trained layer costs twice (input and weight). A layer whose input needs no gradient (text K/V
projections, everything before the first trained layer) costs nothing in backward. A LoRA adapter of rank r on a
layer with n tokens costs 2 n r (in + out) forward and twice that backward. Gradient checkpointing recomputes
each block's forward once: reported apart, because MFU counts the model's FLOPs, not the recomputation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TransformerShape:
    """What the formula needs of a model and a batch."""

    dim: int  # heads x head dim
    ffn_dim: int
    num_layers: int
    text_dim: int  # width of the text encoder's states (UMT5: 4096)
    freq_dim: int  # sinusoidal timestep features
    in_channels: int  # patch embedding input channels (latents + conditioning)
    out_channels: int
    patch_volume: int  # frames x height x width of one patch
    video_tokens: int  # per sample, after patching
    text_tokens: int  # per sample (the pipelines pad to 512)
    per_token_timesteps: bool  # TI2V-5B embeds a timestep per token; A14B one per sample

    @classmethod
    def of(cls, config: dict, latent_shape: tuple[int, int, int], text_tokens: int, per_token_timesteps: bool):
        """From a diffusers WanTransformer3DModel config and the latent (frames, height, width) of one sample."""
        p_t, p_h, p_w = config["patch_size"]
        frames, height, width = latent_shape
        return cls(
            dim=config["num_attention_heads"] * config["attention_head_dim"],
            ffn_dim=config["ffn_dim"],
            num_layers=config["num_layers"],
            text_dim=config["text_dim"],
            freq_dim=config["freq_dim"],
            in_channels=config["in_channels"],
            out_channels=config["out_channels"],
            patch_volume=p_t * p_h * p_w,
            video_tokens=(frames // p_t) * (height // p_h) * (width // p_w),
            text_tokens=text_tokens,
            per_token_timesteps=per_token_timesteps,
        )


@dataclass(frozen=True)
class StepFlops:
    forward: float
    backward: float
    recompute: float  # gradient checkpointing's second forward of every block

    @property
    def model(self) -> float:
        """What MFU is measured on: forward + backward, without recomputation."""
        return self.forward + self.backward

    @property
    def hardware(self) -> float:
        return self.model + self.recompute

    def as_dict(self) -> dict:
        return {**asdict(self), "model": self.model, "hardware": self.hardware}


def _linear(tokens: int, inputs: int, outputs: int) -> float:
    return 2.0 * tokens * inputs * outputs


def block_forward(shape: TransformerShape) -> dict[str, float]:
    """One block's forward FLOPs by part, for one sample."""
    d, f, n, t = shape.dim, shape.ffn_dim, shape.video_tokens, shape.text_tokens
    return {
        "self_qkvo": 4 * _linear(n, d, d),
        "self_attention": 2 * 2.0 * n * n * d,  # QK^T and AV
        "cross_qo": 2 * _linear(n, d, d),
        "cross_kv": 2 * _linear(t, d, d),
        "cross_attention": 2 * 2.0 * n * t * d,
        "ffn": _linear(n, d, f) + _linear(n, f, d),
    }


def outside_blocks_forward(shape: TransformerShape) -> float:
    """Patch embedding, text and time embedders and the output head, for one sample."""
    d, n, t = shape.dim, shape.video_tokens, shape.text_tokens
    patch = _linear(n, shape.in_channels * shape.patch_volume, d)
    text = _linear(t, shape.text_dim, d) + _linear(t, d, d)
    time_tokens = n if shape.per_token_timesteps else 1
    time = _linear(time_tokens, shape.freq_dim, d) + _linear(time_tokens, d, d) + _linear(time_tokens, d, 6 * d)
    head = _linear(n, d, shape.out_channels * shape.patch_volume)
    return patch + text + time + head


def _embedder_first_layers(shape: TransformerShape) -> float:
    """Forward FLOPs of the patch embedding and the first linear of the text and time embedders."""
    time_tokens = shape.video_tokens if shape.per_token_timesteps else 1
    return (
        _linear(shape.video_tokens, shape.in_channels * shape.patch_volume, shape.dim)
        + _linear(shape.text_tokens, shape.text_dim, shape.dim)
        + _linear(time_tokens, shape.freq_dim, shape.dim)
    )


def lora_forward(shape: TransformerShape, rank: int) -> tuple[float, float]:
    """Forward FLOPs of rank-`rank` adapters on every block linear: (on video tokens, on text tokens)."""
    d, f, n, t = shape.dim, shape.ffn_dim, shape.video_tokens, shape.text_tokens
    video = 6 * 2.0 * n * rank * (d + d) + 2.0 * n * rank * (d + f) * 2  # q,k,v,o,q2,o2 + ffn pair
    text = 2 * 2.0 * t * rank * (d + d)  # cross-attention k,v
    return video * shape.num_layers, text * shape.num_layers


def training_step_flops(
    shape: TransformerShape,
    batch_size: int,
    method: str,
    lora_rank: int = 0,
    gradient_checkpointing: bool = False,
) -> StepFlops:
    """FLOPs of one optimizer step's forward, backward and recomputation for `method` 'lora' or 'full'."""
    if method not in ("lora", "full"):
        raise ValueError(f"method {method!r}: the formula covers 'lora' and 'full'")
    parts = block_forward(shape)
    block = sum(parts.values())
    attention = parts["self_attention"] + parts["cross_attention"]
    video_linears = parts["self_qkvo"] + parts["cross_qo"] + parts["ffn"]
    forward = shape.num_layers * block + outside_blocks_forward(shape)
    head = _linear(shape.video_tokens, shape.dim, shape.out_channels * shape.patch_volume)
    if method == "full":
        # Every weight trains, so every linear costs x2 (weight and input gradient) except the first layer of each
        # embedder, whose input (patches, text states, sinusoidal features) needs no gradient (x1).
        per_block = 2 * (video_linears + parts["cross_kv"] + attention)
        first_layers = _embedder_first_layers(shape)
        backward = shape.num_layers * per_block + 2 * outside_blocks_forward(shape) - first_layers
    else:
        # Frozen linears pass the gradient to their input only; text K/V inputs need none. In the first block the
        # self-attention q/k/v inputs come straight from the frozen embedding, so they need none either.
        per_block = video_linears + 2 * attention
        first_block_qkv = 3 * _linear(shape.video_tokens, shape.dim, shape.dim)
        backward = shape.num_layers * per_block - first_block_qkv + head
        video_adapters, text_adapters = lora_forward(shape, lora_rank)
        forward += video_adapters + text_adapters
        # Adapter backward: both adapter weights, and the input gradient except on text (K/V) inputs.
        backward += 2 * video_adapters + 1.5 * text_adapters
        backward -= 3 * _linear(shape.video_tokens, shape.dim, lora_rank)  # the first block's q/k/v adapter inputs
    recompute = shape.num_layers * block if gradient_checkpointing else 0.0
    if method == "lora" and gradient_checkpointing:
        video_adapters, text_adapters = lora_forward(shape, lora_rank)
        recompute += video_adapters + text_adapters
    return StepFlops(forward * batch_size, backward * batch_size, recompute * batch_size)
