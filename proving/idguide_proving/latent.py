"""The latent world's models: a KL autoencoder, a tiny distilled one, a scene-prompted latent denoiser.

As in Stable Diffusion: images (32×32 RGB) are encoded to 8×8×4 latents by an ``AutoencoderKL``
and scaled by its ``scaling_factor`` to unit variance; the denoiser works on scaled latents; the
pipeline decodes with ``vae.decode(latents / scaling_factor)``. The tiny autoencoder is an
``AutoencoderTiny`` (the TAESD architecture) distilled from the full one: it reads and writes
*scaled* latents (its ``scaling_factor`` is 1), as TAESD does for SD's latents, at a small
fraction of the full decoder's FLOPs.

The denoiser is a ``UNet2DModel`` conditioned on the prompt's three attributes — category,
background, side — through ``PromptEncoder``: a learned vector per value (and a "not named"
vector per attribute) summed into the UNet's class embedding. Training drops attributes for
classifier-free guidance; unnamed attributes are the null vectors, so "striped disc" alone is a
valid prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DModel
from torch import nn

from .world import BACKGROUNDS, CATEGORIES, NUM_CATEGORIES, SIDES, SIZE

LATENT_CHANNELS = 4
LATENT_SIZE = SIZE // 4  # 8×8 latents


def autoencoder(scaling_factor: float = 1.0) -> AutoencoderKL:
    """32×32×3 ↔ 8×8×4, SD's VAE architecture at toy width (no mid-block attention)."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8,
        scaling_factor=scaling_factor, force_upcast=False, mid_block_add_attention=False,
    )


def tiny_autoencoder() -> AutoencoderTiny:
    """The TAESD architecture at toy width: scaled latents in and out (``scaling_factor`` 1)."""
    return AutoencoderTiny(
        latent_channels=LATENT_CHANNELS, encoder_block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(16, 16, 16), num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 0),
        scaling_factor=1.0, shift_factor=0.0,
    )


def denoiser(cls=None) -> UNet2DModel:
    """ε-prediction UNet (or subclass ``cls``) on 8×8×4 scaled latents; its class embedding is a
    ``PromptEncoder``, so ``class_labels`` are ``[B, 3]`` attribute indices."""
    unet = (cls or UNet2DModel)(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=(64, 128, 128), layers_per_block=1,
        down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
        attention_head_dim=32, norm_num_groups=16, class_embed_type="identity",
        resnet_time_scale_shift="scale_shift",
    )
    unet.class_embedding = PromptEncoder(unet.config.block_out_channels[0] * 4)
    return unet


@dataclass(frozen=True)
class Prompt:
    """A parsed prompt: category, background and side encodings (``None`` = not named)."""

    category: int
    background: int | None = None
    side: int | None = None

    @property
    def text(self) -> str:
        text = CATEGORIES[self.category]
        if self.background is not None:
            text += f" on a {BACKGROUNDS[self.background]} background"
        if self.side is not None:
            text += f", on the {SIDES[self.side]}"
        return text


_PROMPT = re.compile(
    r"^(?:an? )?(?P<category>" + "|".join(CATEGORIES) + r")"
    r"(?: on an? (?P<background>" + "|".join(BACKGROUNDS) + r") background)?"
    r"(?:,? on the (?P<side>" + "|".join(SIDES) + r"))?$"
)


def parse_prompt(prompt) -> Prompt:
    """``"striped disc on a textured background, on the left"`` (background and side optional),
    a category index, or a ``Prompt``."""
    if isinstance(prompt, Prompt):
        return prompt
    if isinstance(prompt, int) and not isinstance(prompt, bool) and 0 <= prompt < NUM_CATEGORIES:
        return Prompt(prompt)
    if isinstance(prompt, str):
        match = _PROMPT.match(" ".join(prompt.lower().replace(".", " ").split()))
        if match:
            return Prompt(CATEGORIES.index(match["category"]),
                          None if match["background"] is None else BACKGROUNDS.index(match["background"]),
                          None if match["side"] is None else SIDES.index(match["side"]))
    raise ValueError(f"cannot read the prompt {prompt!r}: write '<category>[ on a <background> background]"
                     f"[, on the <side>]' with category one of {', '.join(CATEGORIES)}; background one of "
                     f"{', '.join(BACKGROUNDS)}; side one of {', '.join(SIDES)}")


class PromptEncoder(nn.Module):
    """Prompt attributes → the denoiser's class embedding: one learned vector per value, summed.
    Index ``len(values)`` of each attribute is its "not named" vector (all three: unconditional)."""

    SIZES = (NUM_CATEGORIES, len(BACKGROUNDS), len(SIDES))

    def __init__(self, dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n + 1, dim) for n in self.SIZES)

    def labels(self, prompts, device=None) -> torch.Tensor:
        """``[B, 3]`` attribute indices of parsed prompts (``None`` → the null index)."""
        rows = [[n if v is None else v for v, n in zip((p.category, p.background, p.side), self.SIZES)]
                for p in prompts]
        return torch.tensor(rows, dtype=torch.long, device=device)

    def null(self, batch: int, device=None) -> torch.Tensor:
        return torch.tensor([list(self.SIZES)] * batch, dtype=torch.long, device=device)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return sum(table(labels[:, i]) for i, table in enumerate(self.tables))


# --- loading -------------------------------------------------------------------------------
def load_autoencoder(weights=None) -> AutoencoderKL:
    """The trained KL autoencoder, with the scaling factor it was trained to (kept in the file)."""
    from .models import load_state, read_metadata

    factor = float(read_metadata("autoencoder", weights).get("scaling_factor", "nan"))
    if not factor > 0:
        raise ValueError("proving ground autoencoder: its file has no scaling_factor in the metadata")
    return load_state(autoencoder(factor), "autoencoder", weights).requires_grad_(False)


def load_tiny_autoencoder(weights=None) -> AutoencoderTiny:
    from .models import load_state

    return load_state(tiny_autoencoder(), "tiny_autoencoder", weights).requires_grad_(False)


def load_latent_unet(weights=None, cls=None) -> UNet2DModel:
    from .models import load_state

    return load_state(denoiser(cls), "latent_generator", weights).requires_grad_(False)
