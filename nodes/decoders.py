"""The decoders the nodes score through: a gradient-capable copy of the VAE's decoder, or the
TAESD decoder of ComfyUI's previews (``models/vae_approx``), each placed and freed by ComfyUI's
model management and reused across runs."""

from __future__ import annotations

import copy
import logging
import weakref
from typing import Callable

import torch

from ..guidance.decode import shrink_latents
from ..scorers import checks
from .common import ensure_loaded, patcher_for

_decoders: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


DECODERS = ("auto", "taesd", "vae")
DECODER_TOOLTIP = ("what decodes for the identity score: taesd = the tiny TAESD decoder of ComfyUI's previews "
                   "(models/vae_approx; a fraction of the VAE's compute and memory), vae = the VAE (exact, "
                   "costly), auto = taesd when its file is there, else the VAE")


class ComfyVaeDecoder:
    """latents (VAE space) → [B,3,H,W] in [0, 1], differentiable, at most ``decode_size`` px."""

    model_space = False  # it decodes what ``process_latent_out`` gives

    def __init__(self, vae, decode_size: int | None):
        checks.decode_size(decode_size)
        with torch.inference_mode(False):
            model = copy.deepcopy(vae.first_stage_model).requires_grad_(False)
        self.patcher = patcher_for(model)  # placed and freed by ComfyUI like the VAE itself
        self.dtype = vae.vae_dtype
        ratio = vae.downscale_ratio
        self.ratio = ratio if isinstance(ratio, int) else 8
        self.process_output = vae.process_output
        self.decode_size = decode_size

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        latents = shrink_latents(latents, self.decode_size, self.ratio)
        ensure_loaded(self.patcher)
        model = self.patcher.model.module
        images = model.decode(latents.to(self.patcher.load_device, self.dtype))
        return self.process_output(images.float())


class ComfyTinyDecoder:
    """The model's latents → [B,3,H,W] in [0, 1] through the TAESD decoder ComfyUI's previews use:
    TAESD reads the sampler's (model-space) latents as they are, for every family."""

    model_space = True

    def __init__(self, path: str, latent_channels: int, decode_size: int | None):
        import comfy.taesd.taesd

        checks.decode_size(decode_size)
        with torch.inference_mode(False):
            taesd = comfy.taesd.taesd.TAESD(None, path, latent_channels=latent_channels)
        self.patcher = patcher_for(taesd.taesd_decoder.requires_grad_(False))
        self.decode_size = decode_size

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        latents = shrink_latents(latents, self.decode_size, 8)  # TAESD: 8 pixels per latent
        ensure_loaded(self.patcher)
        module = self.patcher.model.module
        weight = next(module.parameters())
        return module(latents.to(weight.device, weight.dtype)).float().clamp(0, 1)


_tiny_decoders: dict = {}


def taesd_path(latent_format, required: bool) -> str | None:
    """The vae_approx file ComfyUI's TAESD previews use for ``latent_format`` (None if absent and
    not ``required``; else a one-line error naming the file and the folder)."""
    import folder_paths

    name = getattr(latent_format, "taesd_decoder_name", None)
    if name is None:
        if not required:
            return None
        raise ValueError(f"decoder 'taesd': ComfyUI has no TAESD for {type(latent_format).__name__} latents; "
                         "choose decoder 'vae'")
    found = next((f for f in folder_paths.get_filename_list("vae_approx") if f.startswith(name)), None)
    if found is None:
        if not required:
            return None
        folder = folder_paths.get_folder_paths("vae_approx")[0]
        raise FileNotFoundError(f"decoder 'taesd' needs {name}.safetensors (or .pth) in {folder} — the file ComfyUI's "
                                "TAESD previews use, from https://github.com/madebyollin/taesd — or choose decoder 'vae'")
    return folder_paths.get_full_path("vae_approx", found)


def decoder_for(vae, decode_size: int | None, choice: str = "vae", latent_format=None):
    """The decoder a node scores through (one per VAE or TAESD file and size, reused across runs);
    ``choice`` one of ``DECODERS``. Its ``model_space`` says whether it reads the sampler's latents
    (TAESD) or the VAE's (``process_latent_out`` first)."""
    if choice not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {choice!r}")
    if choice != "vae":
        path = taesd_path(latent_format, required=choice == "taesd")
        if path is not None:
            key = (path, decode_size)
            if key not in _tiny_decoders:
                _tiny_decoders[key] = ComfyTinyDecoder(path, latent_format.latent_channels, decode_size)
            return _tiny_decoders[key]
        logging.info("IDGuide: no %s in models/vae_approx, decoding with the VAE (costlier; TAESD's file makes "
                     "it cheaper)", getattr(latent_format, "taesd_decoder_name", "TAESD decoder"))
    per_vae = _decoders.setdefault(vae, {})
    if decode_size not in per_vae:
        per_vae[decode_size] = ComfyVaeDecoder(vae, decode_size)
    return per_vae[decode_size]


def model_space(decoder, base) -> Callable[[torch.Tensor], torch.Tensor]:
    """``decoder`` as a function of the sampler's latents."""
    if decoder.model_space:
        return decoder
    return lambda x: decoder(base.process_latent_out(x))
