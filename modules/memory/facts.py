"""What the memory planner needs to know about a model, as plain numbers.

A plugin fills these from the model's real configs (for WAN: modules/wan/memory_facts.py, reached through
modules/registry.py), so the planner's arithmetic in modules/memory/ knows no model family.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TransformerFacts:
    """One diffusion transformer (one expert). Parameter counts are numbers of elements."""

    num_blocks: int
    dim: int
    ffn_dim: int
    heads: int
    block_params: int  # one block's parameters
    block_linear_params: int  # of those, the weights of the block linears (what fp8 / int8 / nf4 storage quantises)
    block_linears: int  # linears per block (each gets a scale in fp8 storage)
    block_fp32_params: int  # of a block's parameters, those kept in float32 (norms, modulation)
    other_params: int  # outside the blocks (embedders, head), in the load dtype
    other_fp32_params: int  # outside the blocks, kept in float32
    lora_params_per_rank: int  # parameters of a rank-1 LoRA on every default target linear of every block
    largest_linear: int  # elements of the largest block linear weight (the fp8 upcast transient)
    per_token_modulation: bool  # one timestep per token (TI2V-5B): each block keeps per-token modulation

    @property
    def params(self) -> int:
        return self.num_blocks * self.block_params + self.other_params + self.other_fp32_params

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass(frozen=True)
class TextEncoderFacts:
    params: int
    embedding_params: int  # the token embedding table (vocabulary x width), part of params
    dim: int
    ffn_dim: int
    heads: int
    layers: int
    max_tokens: int  # tokens per caption as the pipelines encode them


@dataclass(frozen=True)
class VaeFacts:
    params: int
    encoder_channels: int  # channels of the encoder's first (full-resolution) stage
    decoder_channels: int  # channels of the decoder's last (full-resolution) stage
    patch: int  # pixels folded into channels before the first conv (2 for the Wan2.2 VAE, else 1)
    temporal_chunk: int  # frames the causal VAE processes at a time (4 for WAN's VAEs)


@dataclass(frozen=True)
class ModelFacts:
    name: str
    experts: tuple[TransformerFacts, ...]  # one per expert; A14B has two of the same shape
    text_encoder: TextEncoderFacts
    vae: VaeFacts
    pixels_per_token: int  # side of the square of pixels one latent token covers (VAE stride x patch)
    frames_per_latent: int  # VAE temporal stride
    extra_condition_frames: int = 0  # image conditions cached with the latents (I2V)
    # The dtype the transformer's files store its block matrices in ("float8_e4m3fn", "bfloat16", ...), read from
    # their headers; None where unknown (a hub id, planning without files). Weights are mapped from their file, not
    # copied, where it equals the storage dtype (memory.map_weights). Not part of equality: it describes the files, not
    # the model (a loaded model's facts equal its folder's).
    source_dtype: str | None = field(default=None, compare=False)
    # The same for UMT5's folder (None for a single file, a hub id, or unreadable): where it equals the dtype UMT5 is
    # loaded in, its weights stay on the files' mapping and the embedding table is read only at the captions' tokens.
    text_encoder_source_dtype: str | None = field(default=None, compare=False)

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.frames_per_latent + 1

    def tokens(self, width: int, height: int, frames: int) -> int:
        side = self.pixels_per_token
        return self.latent_frames(frames) * (height // side) * (width // side)

    def tokens_for_area(self, side: int, frames: int) -> int:
        """Tokens of a clip bucketed to about side x side pixels (any aspect ratio: the area is what counts)."""
        return self.latent_frames(frames) * round(side * side / self.pixels_per_token**2)
