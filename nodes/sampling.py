"""KSampler's own sampling path, one image at a time, for the sampler nodes that search over samples."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from .common import ReferenceSocket
from .score import scores_for


def graph_inputs(latent_tooltip: str) -> list:
    """What a sampler node takes from the graph, as KSampler does, plus the reference and the seed."""
    return [
        io.Model.Input("model"),
        io.Conditioning.Input("positive"),
        io.Conditioning.Input("negative"),
        io.Latent.Input("latent_image", tooltip=latent_tooltip),
        io.Vae.Input("vae"),
        ReferenceSocket.Input("reference"),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
    ]


def sampler_inputs() -> list:
    """KSampler's own settings, with its defaults (denoise optional, so saved workflows stay valid)."""
    import comfy.samplers

    return [
        io.Int.Input("steps", default=20, min=1, max=10000),
        io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1),
        io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler"),
        io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal"),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="below 1: img2img from latent_image, as in KSampler"),
    ]


class KSampling:
    """Samples exactly what a KSampler with the same settings and seed gives (every sampler: ancestral
    and SDE ones draw their per-step noise from the seed; ``denoise`` for img2img, the latent's noise
    mask for inpainting, its batch index, latent previews), then decodes and scores."""

    def __init__(self, model, positive, negative, latent_image: dict, vae, reference, steps: int, cfg: float,
                 sampler_name: str, scheduler: str, denoise: float = 1.0):
        import comfy.sample

        self.latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"])
        if self.latent.shape[0] != 1:
            raise ValueError(f"latent_image must have batch size 1, got {self.latent.shape[0]}")
        self.batch_index = latent_image.get("batch_index")
        self.noise_mask = latent_image.get("noise_mask")
        self.model, self.positive, self.negative, self.vae, self.reference = model, positive, negative, vae, reference
        self.steps, self.cfg, self.sampler_name, self.scheduler, self.denoise = steps, cfg, sampler_name, scheduler, denoise

    def noise(self, seed: int) -> torch.Tensor:
        """The initial noise a KSampler draws for ``seed`` (``[1,C,H,W]``)."""
        import comfy.sample

        return comfy.sample.prepare_noise(self.latent, seed, self.batch_index)

    def sample(self, noise: torch.Tensor, seed: int, start: torch.Tensor | None = None,
               strength: float = 1.0) -> torch.Tensor:
        """One latent from ``noise``; with ``start``, re-noise that latent to ``strength`` of this
        run's denoise and sample from there (as a KSampler with that denoise would, at the same step
        spacing, so it costs ``strength`` of a full sample)."""
        import comfy.model_management as mm
        import comfy.sample
        import latent_preview

        mm.throw_exception_if_processing_interrupted()
        steps = self.steps if start is None else max(1, round(self.steps * strength))
        denoise = self.denoise if start is None else self.denoise * strength
        return comfy.sample.sample(
            self.model, noise, steps, self.cfg, self.sampler_name, self.scheduler, self.positive, self.negative,
            self.latent if start is None else start, denoise=denoise, noise_mask=self.noise_mask,
            callback=latent_preview.prepare_callback(self.model, steps), disable_pbar=True, seed=seed)

    def score(self, latents: list[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        """Decode ``[1,C,H,W]`` latents → IMAGE ``[b,H,W,3]`` (on the CPU) and their scores."""
        decoded = self.vae.decode(torch.cat(latents))
        return decoded.cpu(), scores_for(self.reference, decoded, progress=False)
