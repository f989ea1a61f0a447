"""Identity guidance for diffusers pipelines as a ``PipelineCallback``: no pipeline edit.

diffusers calls step-end callbacks after ``scheduler.step`` with the new latents only. To
know the step's clean estimate, the callback records the arguments of ``scheduler.step``
(model output after CFG, timestep, sample) from its first call on, so the first step of a
run is never guided. For each guided step it computes x̂0, guides it (``guided_denoised``)
and moves the new latents by the change of the clean estimate times the signal coefficient
of the next noise level (√ᾱ for VP schedules, 1 for EDM sigmas, 1-σ for rectified flow):
the guided clean image re-noised with the sampler's own noise. The recorder is removed
after the last step.

Supported: StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline and
FluxPipeline (packed latents), and any other pipeline that follows diffusers' callback
conventions (``scheduler``, ``num_timesteps``, ``callback_on_step_end``) when ``decoder`` is
given — a pixel-space pipeline's decoder is just the map to [0, 1] — with VP schedulers (DDIM, DDPM, PNDM, DPM-Solver++, UniPC;
epsilon, v-prediction or sample), EDM-sigma schedulers (Euler, Euler ancestral, LMS) or
flow matching (FlowMatchEuler), with or without CFG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UniPCMultistepScheduler,
)
from diffusers.callbacks import PipelineCallback

from ..scorers import Scorer
from ..scorers.base import EmbeddingOrImages
from .decode import VaeDecoder
from .loss import IdentityLoss, ReferenceMode
from .step import Decode, GuidanceSettings, guided_denoised, noise_fraction

PIPELINES = (StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline)
VP_SCHEDULERS = (DDIMScheduler, DDPMScheduler, PNDMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler)
SIGMA_SCHEDULERS = (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LMSDiscreteScheduler)
FLOW_SCHEDULERS = (FlowMatchEulerDiscreteScheduler,)


class StepRecorder:
    """Stands in for ``scheduler.step``: remembers its inputs, then calls the real one."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.original = scheduler.step
        self.last: tuple | None = None
        scheduler.step = self

    def __call__(self, model_output, timestep, sample, *args, **kwargs):
        index = getattr(self.scheduler, "step_index", None)
        self.last = (model_output.detach(), timestep, sample.detach(), index)
        return self.original(model_output, timestep, sample, *args, **kwargs)

    def remove(self) -> None:
        if self.scheduler.__dict__.get("step") is self:
            del self.scheduler.step
        self.last = None


@dataclass
class Attachment:
    pipeline: object
    recorder: StepRecorder
    flux_grid: tuple[int, int] | None = None
    hook: object = None

    def remove(self) -> None:
        self.recorder.remove()
        if self.hook is not None:
            self.hook.remove()


@dataclass(frozen=True)
class StepTerms:
    denoised: torch.Tensor  # x̂0 of the recorded step
    weight: float  # w_t = σ²/(s²+σ²)
    next_signal: float  # coefficient of x0 in the latents after the step


def step_terms(scheduler, model_output, timestep, sample, index: int | None, step_index: int) -> StepTerms:
    """x̂0, noise weight and next signal coefficient for one recorded scheduler step."""
    out, x = model_output.float(), sample.float()
    if isinstance(scheduler, FLOW_SCHEDULERS):
        i = step_index if index is None else index
        sigma, sigma_next = float(scheduler.sigmas[i]), float(scheduler.sigmas[i + 1])
        return StepTerms(x - sigma * out, noise_fraction(1 - sigma, sigma), 1 - sigma_next)
    prediction = scheduler.config.prediction_type
    if isinstance(scheduler, SIGMA_SCHEDULERS):  # x = x0 + σ ε
        i = step_index if index is None else index
        sigma = float(scheduler.sigmas[i])
        if prediction == "epsilon":
            x0 = x - sigma * out
        elif prediction == "v_prediction":
            x0 = out * (-sigma / math.sqrt(sigma**2 + 1)) + x / (sigma**2 + 1)
        else:
            x0 = out
        return StepTerms(x0, noise_fraction(1.0, sigma), 1.0)
    alphas = scheduler.alphas_cumprod
    a = float(alphas[int(timestep)])
    timesteps = scheduler.timesteps
    a_next = float(alphas[int(timesteps[step_index + 1])]) if step_index + 1 < len(timesteps) else 1.0
    if prediction == "epsilon":
        x0 = (x - math.sqrt(1 - a) * out) / math.sqrt(a)
    elif prediction == "v_prediction":
        x0 = math.sqrt(a) * x - math.sqrt(1 - a) * out
    else:
        x0 = out
    return StepTerms(x0, noise_fraction(math.sqrt(a), math.sqrt(1 - a)), math.sqrt(a_next))


class IdentityGuidanceCallback(PipelineCallback):
    """Steer a diffusers pipeline toward a reference identity.

    ``pipe(..., callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs)``;
    composes with ``MultiPipelineCallbacks``. ``reference``: images ``[R,3,H,W]`` of one
    identity (or an ``Embedding``), embedded once. ``decoder``: optional differentiable
    ``latents → images`` callable (it receives the pipeline's latents, packed for Flux);
    default: the pipeline's VAE at ``decode_size`` pixels. See ``guidance.step`` for the rule.
    """

    tensor_inputs = ["latents"]

    def __init__(
        self,
        scorer: Scorer,
        reference: EmbeddingOrImages,
        scale: float = 1.0,
        start: float = 0.0,
        end: float = 0.5,
        every: int = 1,
        inner_steps: int = 1,
        decode_size: int | None = 512,
        clip: float | None = 3.0,
        reference_mode: ReferenceMode = "mean",
        decoder: Decode | None = None,
    ):
        super().__init__()
        self.settings = GuidanceSettings(scale, start, end, every, inner_steps, clip)
        self.register_to_config(
            scale=scale, start=start, end=end, every=every, inner_steps=inner_steps, decode_size=decode_size,
            clip=clip, reference_mode=reference_mode, scorer=scorer.name,
        )
        self.loss = IdentityLoss(scorer, reference, reference_mode)
        self.decode_size = decode_size
        self.decoder = decoder
        self._attached: Attachment | None = None

    # --- attaching -------------------------------------------------------------------------
    def _attach(self, pipeline) -> Attachment:
        if self._attached is not None and self._attached.pipeline is pipeline:
            return self._attached
        self.detach()
        if not isinstance(pipeline, PIPELINES) and self.decoder is None:
            names = ", ".join(p.__name__ for p in PIPELINES)
            raise TypeError(f"IdentityGuidanceCallback decodes the latents of {names} itself; for "
                            f"{type(pipeline).__name__} pass decoder= (a differentiable latents → images in [0, 1])")
        if not hasattr(pipeline, "scheduler") or not hasattr(pipeline, "num_timesteps"):
            raise TypeError(f"{type(pipeline).__name__} does not follow diffusers' callback conventions "
                            "(it needs .scheduler and .num_timesteps)")
        scheduler = pipeline.scheduler
        if not isinstance(scheduler, VP_SCHEDULERS + SIGMA_SCHEDULERS + FLOW_SCHEDULERS):
            names = ", ".join(s.__name__ for s in VP_SCHEDULERS + SIGMA_SCHEDULERS + FLOW_SCHEDULERS)
            raise TypeError(f"IdentityGuidanceCallback supports the schedulers {names}; got {type(scheduler).__name__}")
        attachment = Attachment(pipeline, StepRecorder(scheduler))
        if isinstance(pipeline, FluxPipeline):

            def record_grid(module, args, kwargs):
                if attachment.flux_grid is None and kwargs.get("img_ids") is not None:
                    ids = kwargs["img_ids"]
                    attachment.flux_grid = (int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)

            attachment.hook = pipeline.transformer.register_forward_pre_hook(record_grid, with_kwargs=True)
        self._attached = attachment
        return attachment

    def detach(self) -> None:
        """Remove the step recorder (done automatically after a run's last step)."""
        if self._attached is not None:
            self._attached.remove()
            self._attached = None

    # --- the callback ----------------------------------------------------------------------
    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        attachment = self._attach(pipeline)
        num_steps = pipeline.num_timesteps
        try:
            if self.settings.active(step_index, num_steps) and attachment.recorder.last is not None:
                callback_kwargs["latents"] = self._guide(attachment, step_index, callback_kwargs["latents"])
        finally:
            if step_index >= num_steps - 1:
                self.detach()
            else:
                attachment.recorder.last = None
        return callback_kwargs

    def _guide(self, attachment: Attachment, step_index: int, latents: torch.Tensor) -> torch.Tensor:
        pipeline = attachment.pipeline
        model_output, timestep, sample, index = attachment.recorder.last
        terms = step_terms(pipeline.scheduler, model_output, timestep, sample, index, step_index)
        guided = guided_denoised(terms.denoised, self._decoder(attachment), self.loss, terms.weight, self.settings)
        if guided is terms.denoised:  # skipped (non-finite) or no-op: the run stays unguided
            return latents
        return latents + (terms.next_signal * (guided - terms.denoised)).to(latents.dtype)

    def _decoder(self, attachment: Attachment) -> Decode:
        if self.decoder is not None:
            return self.decoder
        pipeline = attachment.pipeline
        unpack = None
        if isinstance(pipeline, FluxPipeline):
            if attachment.flux_grid is None:
                raise RuntimeError("Flux latent grid unknown: the transformer was not called with img_ids")
            rows, cols = attachment.flux_grid

            def unpack(x: torch.Tensor) -> torch.Tensor:
                b, _, c = x.shape
                x = x.view(b, rows, cols, c // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
                return x.reshape(b, c // 4, rows * 2, cols * 2)

        vae = pipeline.vae
        return VaeDecoder(vae, self.decode_size, unpack, getattr(pipeline, "vae_scale_factor", None))
