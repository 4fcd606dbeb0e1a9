"""WanModel: the loaded parts of a WAN 2.2 model, and the encoders exactly as the diffusers pipelines use them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from modules.base.model import BaseModel
from modules.wan.encoder_parts import EncoderPart
from modules.wan.variants import WanVariant

ENCODERS = ("text_encoder", "vae")


def trim_to_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Each prompt's hidden states cut to its real tokens, in float32 (the pipeline zero-pads the rest)."""
    return [h[:n].float() for h, n in zip(hidden, mask.gt(0).sum(dim=1).tolist())]


@dataclass(eq=False)
class WanModel(BaseModel):
    variant: WanVariant
    tokenizer: PreTrainedTokenizerBase
    # Read on first use and released after caching (encoder_parts.py): properties over `encoder_parts`.
    text_encoder: UMT5EncoderModel | None = field(repr=False)
    vae: AutoencoderKLWan | None = field(repr=False)
    transformer: WanTransformer3DModel | None  # the only expert (5B) or the high-noise expert (A14B); None: caching
    transformer_2: WanTransformer3DModel | None  # the low-noise expert (A14B)
    scheduler: object  # the inference scheduler from the model folder
    model_path: Path
    source_identity: str = ""
    base_weights_identity: str = ""  # model.base_loras merged at load (loading/base_loras.py); "" for none
    vae_identity: str = ""  # what VAE-encoded caches depend on
    text_encoder_identity: str = ""  # what caption caches depend on (encoder and tokenizer)
    text_max_length: int = 512
    train_dtype: torch.dtype = torch.float32
    # Set by the setup: which experts are trained in this run ("transformer", "transformer_2").
    trained_experts: list[str] = field(default_factory=list)
    # Sample prompts encoded while caching (prompt -> trimmed float32 states), so sampling needs no UMT5.
    prompt_embeds: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    # ---- encoders: loaded on first use, released after their phase ------------------------------
    def encoder_part(self, name: str) -> EncoderPart:
        parts = self.__dict__.setdefault("encoder_parts", {})
        return parts.setdefault(name, EncoderPart(name))

    def set_encoder_source(self, name: str, load: Callable[[], torch.nn.Module], dtype: torch.dtype) -> None:
        """How to read `name` when it is first used (the loader calls this instead of loading it)."""
        part = self.encoder_part(name)
        part.load, part.dtype = load, dtype

    def resident(self, name: str) -> torch.nn.Module | None:
        """The encoder if it is in memory now, else None (never loads it)."""
        return self.encoder_part(name).module

    def encoder_dtype(self, name: str) -> torch.dtype | None:
        return self.encoder_part(name).current_dtype()

    def after_encoder_load(self, name: str, key: str, apply: Callable[[torch.nn.Module], None]) -> None:
        """Run `apply` on the encoder now if it is resident and after every later load (fp8 linears, tiling)."""
        part = self.encoder_part(name)
        part.after_load[key] = apply
        if part.module is not None:
            apply(part.module)

    def release_encoders(self, names: tuple[str, ...] = ENCODERS) -> list[str]:
        """Free the encoders that can be read again; UMT5 stays while embeddings are loaded into its rows
        (embedding training, frozen embeddings: docs/embeddings.md). Returns what was released."""
        keep = {"text_encoder"} if vars(self).get("embeddings") else set()
        return [name for name in names if name not in keep and self.encoder_part(name).release()]

    def encoders_to(self, device: torch.device) -> None:
        """Where the encoders run: moved now if resident, placed there when loaded later."""
        for name in ENCODERS:
            self.encoder_to(name, device)

    def encoder_to(self, name: str, device: torch.device | str) -> None:
        part = self.encoder_part(name)
        part.device = torch.device(device)
        if part.module is not None:
            part.module.to(part.device)

    def eval(self) -> None:
        for part in (*self.resident_encoders(), *self.experts()):
            part.eval()

    def memory_facts(self):
        from modules.wan.model_facts import loaded_model_facts

        return loaded_model_facts(self)

    def resident_encoders(self) -> list[torch.nn.Module]:
        return [module for module in map(self.resident, ENCODERS) if module is not None]

    def experts(self) -> list[WanTransformer3DModel]:
        return [t for t in (self.transformer, self.transformer_2) if t is not None]

    # ---- encoders (must match diffusers' WanPipeline bit for bit) -------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> list[torch.Tensor]:
        """UMT5 hidden states of each prompt, trimmed to its real token count.

        The pipeline zero-pads these to `text_max_length` before the transformer; `pad_text_embeds`
        does the same, so caching stores only the real tokens.
        """
        ids, mask = self.tokenize(prompts)
        hidden = self.text_encoder(ids, mask).last_hidden_state
        return [h.cpu() for h in trim_to_tokens(hidden, mask)]

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask on the text encoder's device, exactly as WanPipeline tokenizes."""
        device = self.text_encoder.device
        tokens = self.tokenizer(
            [prompt_clean(p) for p in prompts],
            padding="max_length",
            max_length=self.text_max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        return tokens.input_ids.to(device), tokens.attention_mask.to(device)

    def pad_text_embeds(self, embeds: list[torch.Tensor]) -> torch.Tensor:
        """Stack trimmed embeddings into (batch, text_max_length, dim) with zeros after each prompt."""
        dim = embeds[0].shape[-1]
        out = embeds[0].new_zeros(len(embeds), self.text_max_length, dim)
        for i, e in enumerate(embeds):
            out[i, : e.shape[0]] = e
        return out

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels (batch, 3, frames, height, width) in [-1, 1] -> normalised latents, as the pipelines do.

        The posterior's mean is used (argmax, as diffusers' I2V pipeline does), so caching is deterministic.
        """
        vae_param = next(self.vae.parameters())
        posterior = self.vae.encode(video.to(vae_param.device, vae_param.dtype)).latent_dist
        latents = posterior.mode().float()
        mean, std = self._latent_stats(latents)
        # Multiplying by 1/std (not dividing) is the pipelines' arithmetic: the results match bit for bit.
        return (latents - mean) * (1.0 / std)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> pixels in [-1, 1] (batch, 3, frames, height, width)."""
        vae_param = next(self.vae.parameters())
        latents = latents.to(vae_param.device, torch.float32)
        mean, std = self._latent_stats(latents)
        return self.vae.decode((latents * std + mean).to(vae_param.dtype)).sample.float()


def _encoder_property(name: str) -> property:
    def get(model: WanModel):
        return model.encoder_part(name).get()

    def set(model: WanModel, module) -> None:
        model.encoder_part(name).module = module

    return property(get, set, doc=f"The {name}, read from its file on first use (encoder_parts.py).")


# After the dataclass is built, so that its __init__ assigns through them.
WanModel.text_encoder = _encoder_property("text_encoder")
WanModel.vae = _encoder_property("vae")
