"""WanModel: the loaded parts of a WAN 2.2 model, and the encoders exactly as the diffusers pipelines use them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from modules.base.model import BaseModel
from modules.wan.variants import WanVariant


def trim_to_tokens(hidden: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Each prompt's hidden states cut to its real tokens, in float32 (the pipeline zero-pads the rest)."""
    return [h[:n].float() for h, n in zip(hidden, mask.gt(0).sum(dim=1).tolist())]


@dataclass(eq=False)
class WanModel(BaseModel):
    variant: WanVariant
    tokenizer: PreTrainedTokenizerBase
    text_encoder: UMT5EncoderModel
    vae: AutoencoderKLWan
    transformer: WanTransformer3DModel  # the only expert (5B) or the high-noise expert (A14B)
    transformer_2: WanTransformer3DModel | None  # the low-noise expert (A14B)
    scheduler: object  # the inference scheduler from the model folder
    model_path: Path
    source_identity: str = ""
    vae_identity: str = ""  # what VAE-encoded caches depend on
    text_encoder_identity: str = ""  # what caption caches depend on (encoder and tokenizer)
    text_max_length: int = 512
    train_dtype: torch.dtype = torch.float32
    # Set by the setup: which experts are trained in this run ("transformer", "transformer_2").
    trained_experts: list[str] = field(default_factory=list)

    # ---- devices -------------------------------------------------------------------------------
    def encoders_to(self, device: torch.device) -> None:
        self.vae.to(device)
        self.text_encoder.to(device)

    def eval(self) -> None:
        for part in (self.vae, self.text_encoder, *self.experts()):
            part.eval()

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
