"""Identity Guidance: a MODEL patch (post-CFG function) that works with every stock sampler.

Like ComfyUI's PAG / APG patches: clone the model, register one closure. The closure moves
the CFG result ("denoised", the clean estimate) with ``guidance.guided_denoised`` before the
sampler uses it — the rule the diffusers callback follows too: step i of N is guided when
start <= i/N < end (fractions of the steps, i counted in the sampler's sigmas); the
decoder is a gradient-capable copy of the VAE's decoder (ComfyUI loads weights as
inference tensors, which cannot take part in a backward pass). The scorer and that copy are
additional models of the patched MODEL, so ComfyUI loads and frees them with it. Scale 0 returns the model
untouched, so sampling is bit-identical.
"""

from __future__ import annotations

import copy
import logging
import weakref
from typing import Callable

import torch
from comfy_api.latest import io

from ..guidance import Augment, GuidanceSettings, guided_denoised, noise_fraction
from ..guidance.decode import shrink_latents
from ..guidance.step import keep_fraction, recurrent_denoised
from ..scorers import checks
from .common import ReferenceSocket, ensure_loaded, patcher_for

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


def step_position(sigmas, sigma: float) -> int | None:
    """Index of the current sigma in the sampler's schedule (None when the sampler gives none)."""
    if sigmas is None or len(sigmas) < 2:
        return None
    return int(torch.argmin((sigmas.float().cpu() - sigma).abs()))


def is_flow(model_sampling) -> bool:
    """A rectified-flow model (SD3, Flux): ComfyUI's CONST sampling."""
    import comfy.model_sampling

    return isinstance(model_sampling, comfy.model_sampling.CONST)


def signal_at(sigma: float, flow: bool) -> float:
    """s in ComfyUI's x = s·x0 + σ·ε: 1, or 1 − σ for a flow model."""
    return 1.0 - sigma if flow else 1.0


class IdentityGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideGuidance",
            display_name="Identity Guidance",
            category="idguide",
            description="Steers any sampler toward the reference identity (differentiable identity loss on "
                        "the decoded clean estimate). Scale 0 leaves the model untouched.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae"),
                ReferenceSocket.Input("reference"),
                io.Float.Input("scale", default=2.0, min=0.0, max=20.0, step=0.05,
                               tooltip="step size of the update on the clean latent (0 = off)"),
                io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="first guided step, as a fraction of the sampling steps (as in diffusers)"),
                io.Float.Input("end", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="guidance stops at this fraction of the sampling steps"),
                io.Int.Input("every", default=1, min=1, max=100, tooltip="guide every k-th step"),
                io.Int.Input("inner_steps", default=1, min=1, max=10),
                io.Int.Input("decode_size", default=512, min=64, max=4096, step=64,
                             tooltip="decode at most this many pixels (longer side) to bound memory"),
                io.Int.Input("augment", default=0, min=0, max=32, optional=True,
                             tooltip="average the loss over this many random crops/flips of the decoded image "
                                     "(resists adversarial patterns; 0 = one plain view: fewer scorer passes, but "
                                     "on Euler-type samplers the result fools the scorer more than it changes the "
                                     "identity)"),
                io.Int.Input("recurrence", default=0, min=0, max=10, optional=True,
                             tooltip="self-recurrence: re-noise the guided estimate to the step's noise level, let "
                                     "the model denoise it and guide again, this many times per guided step "
                                     "(one more model evaluation each)"),
                io.Combo.Input("decoder", options=list(DECODERS), default="auto", optional=True,
                               tooltip=DECODER_TOOLTIP),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, vae, reference, scale, start, end, every, inner_steps, decode_size,
                augment=0, recurrence=0, decoder="auto") -> io.NodeOutput:
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if scale == 0:
            return io.NodeOutput(model)
        import comfy.samplers

        settings = GuidanceSettings(scale=scale, start=start, end=end, every=every, inner_steps=inner_steps,
                                    augment=Augment(draws=augment) if augment else None, recurrence=recurrence)
        decoder = decoder_for(vae, decode_size, decoder, model.get_model_object("latent_format"))
        flow = is_flow(model.get_model_object("model_sampling"))
        m = model.clone()
        # Loaded with the diffusion model before sampling, so ComfyUI budgets their memory together.
        m.set_additional_models("idguide", [reference.handle.patcher, decoder.patcher])

        def post_cfg_function(args):
            denoised, base = args["denoised"], args["model"]
            sigma = float(args["sigma"].flatten()[0])
            sigmas = args["model_options"].get("transformer_options", {}).get("sample_sigmas")
            index = step_position(sigmas, sigma)
            if index is None:
                raise RuntimeError("identity guidance needs the sampler's sigmas (transformer_options['sample_sigmas']), "
                                   "which every stock sampler node provides")
            num_steps = len(sigmas) - 1
            if not settings.active(index, num_steps):
                return denoised
            signal = signal_at(sigma, flow)
            weight = noise_fraction(signal, sigma) * settings.multiplier(index, num_steps)
            decode = model_space(decoder, base)
            reference.handle.load()
            guide = lambda d: guided_denoised(d, decode, reference, weight, settings, seed=index)  # noqa: E731
            if not settings.recurrence:
                return guide(denoised)
            # The model at a re-noised sample, as the sampler would call it — minus this patch.
            options = dict(args["model_options"])
            options["sampler_post_cfg_function"] = [f for f in options.get("sampler_post_cfg_function", [])
                                                    if f is not post_cfg_function]
            denoise = lambda x: comfy.samplers.sampling_function(  # noqa: E731
                base, x, args["sigma"], args["uncond"], args["cond"], args["cond_scale"], options)
            following = float(sigmas[index + 1])
            keep = keep_fraction(signal, sigma, signal_at(following, flow), following)
            return recurrent_denoised(args["input"], denoised, denoise, guide, signal, sigma, keep,
                                      settings.recurrence, step=index)

        m.set_model_sampler_post_cfg_function(post_cfg_function)
        return io.NodeOutput(m)
