"""Differentiable latent → image decoding for the guidance step.

Any callable ``latents → [B,3,H,W] in [0, 1]`` works. ``VaeDecoder`` wraps a diffusers
``AutoencoderKL`` the way the pipelines decode; ``TinyDecoder`` a TAESD-family
``AutoencoderTiny``, whose backward pass costs about 1/18 of SD's VAE at 512 px
(``benchmarks/profiles``) — the gradient only needs to point the right way.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F

from ..scorers import checks


class VaeDecoder:
    """``vae.decode(latents / scaling + shift)`` mapped to [0, 1], optionally at reduced size.

    ``decode_size`` (pixels, longer side) shrinks the latent before decoding: the VAE's
    activations kept for the backward pass scale with the area, so this bounds memory.
    ``unpack`` turns packed latents (Flux) into ``[B,C,h,w]`` first.
    """

    def __init__(
        self,
        vae: torch.nn.Module,
        decode_size: int | None = None,
        unpack: Callable[[torch.Tensor], torch.Tensor] | None = None,
        scale_factor: int | None = None,
    ):
        checks.decode_size(decode_size)
        self.vae = vae
        config = vae.config
        self.scaling = float(config.scaling_factor)
        self.shift = float(getattr(config, "shift_factor", None) or 0.0)
        self.scale_factor = scale_factor or 2 ** (len(config.block_out_channels) - 1)
        self.decode_size = decode_size
        self.unpack = unpack
        # A VAE that asks for it (SDXL's: force_upcast) overflows in fp16: decode with an fp32 copy.
        self.upcast = bool(getattr(config, "force_upcast", False)) and next(vae.parameters()).dtype == torch.float16
        self._fp32 = None

    def _vae(self) -> torch.nn.Module:
        if not self.upcast:
            return self.vae
        if self._fp32 is None:
            self._fp32 = copy.deepcopy(self.vae).float()
        return self._fp32

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.unpack is not None:
            latents = self.unpack(latents)
        latents = shrink_latents(latents, self.decode_size, self.scale_factor)
        vae = self._vae()
        dtype = next(vae.parameters()).dtype
        images = vae.decode((latents / self.scaling + self.shift).to(dtype)).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)


class TinyDecoder:
    """A TAESD-family ``AutoencoderTiny`` (taesd, taesdxl, taesd3, taef1) as a differentiable decoder.

    TAESD was trained on the latents the denoiser works in — scaled (and for SD3/Flux shifted)
    — so they go in as they are: the family's scaling and shift are already part of its weights.
    ``decode_size`` and ``unpack`` as for ``VaeDecoder``; ``scale_factor``: pixels per latent (8).
    """

    def __init__(self, tiny: torch.nn.Module, decode_size: int | None = None,
                 unpack: Callable[[torch.Tensor], torch.Tensor] | None = None, scale_factor: int = 8):
        checks.decode_size(decode_size)
        if not callable(getattr(tiny, "decode", None)):
            raise TypeError(f"TinyDecoder needs an AutoencoderTiny (with .decode), got {type(tiny).__name__}")
        self.vae, self.decode_size, self.unpack, self.scale_factor = tiny, decode_size, unpack, scale_factor

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.unpack is not None:
            latents = self.unpack(latents)
        latents = shrink_latents(latents, self.decode_size, self.scale_factor)
        parameter = next(self.vae.parameters())
        images = self.vae.decode(latents.to(parameter.device, parameter.dtype)).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)


def shrink_latents(latents: torch.Tensor, decode_size: int | None, scale_factor: int) -> torch.Tensor:
    """Shrink ``[B,C,h,w]`` latents so the decoded image's longer side is at most ``decode_size``.

    The VAE's activations kept for the backward pass scale with the area: this bounds memory.
    """
    if decode_size is None:
        return latents
    h, w = latents.shape[-2:]
    longest = max(h, w) * scale_factor
    if longest <= decode_size:
        return latents
    size = (max(1, round(h * decode_size / longest)), max(1, round(w * decode_size / longest)))
    return F.interpolate(latents, size=size, mode="bilinear", align_corners=False, antialias=True)
