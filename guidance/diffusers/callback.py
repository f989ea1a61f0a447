"""Identity guidance for diffusers pipelines as a ``PipelineCallback``: no pipeline edit.

The guidance changes a guided step's clean estimate x̂0 *before* the scheduler uses it
(``guidance.diffusers.schedulers``): after step i the callback puts a one-step guard on
``scheduler.step`` that replaces step i+1's model output by the one whose x̂0 is the guided
one, then steps. Every scheduler carries the change as it would carry a better prediction —
multistep history and UniPC's corrector included — and it is exactly what the ComfyUI patch
does with "denoised", so a setting means the same in both. The first step of a run is never
guided (the callback meets the pipeline after step 0).

The guard removes itself when its step runs, when that step or the denoiser's forward
raises, and does nothing if its run was abandoned (a new ``set_timesteps`` makes it stale).

Supported: StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline and
FluxPipeline (packed latents), and any pipeline that follows diffusers' callback conventions
(``scheduler``, ``num_timesteps``, ``callback_on_step_end``) when ``decoder`` is given — a
pixel-space pipeline's decoder is the map to [0, 1]; the schedulers of
``guidance.diffusers.schedulers.SUPPORTED``; with or without CFG.
"""

from __future__ import annotations

import torch
from diffusers import (
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.callbacks import PipelineCallback

from ...scorers import Scorer, checks
from ...scorers.base import EmbeddingOrImages
from ..augment import Augment
from ..loss import IdentityLoss, ReferenceMode
from ..step import GuidanceSettings, guided_step
from .decoder import CHOICES, DEFAULT_DECODER, DecoderChoice, PipelineDecoder
from .replay import DenoiserReplay
from .schedulers import check_scheduler, step_view
from .step_guard import StepGuard

PIPELINES = (StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline)


class IdentityGuidanceCallback(PipelineCallback):
    """Steer a diffusers pipeline toward a reference identity.

    ``pipe(..., callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs)``;
    composes with ``MultiPipelineCallbacks``. ``reference``: images ``[R,3,H,W]`` of one
    identity (or an ``Embedding``), embedded once. ``decoder``: what the gradient flows through —
    ``"auto"`` (the family's TAESD when at hand or downloadable, else the VAE with a warning),
    ``"tiny"``, ``"vae"``, a path, an ``AutoencoderTiny`` or a callable (``guidance.diffusers.decoder``),
    at most ``decode_size`` pixels. See ``guidance.step`` for the rule.

    The defaults (scale 2, every step, one plain view, no self-recurrence, TAESD) were chosen on
    the latent proving ground's tuning seeds at equal cost as real models price it
    (``benchmarks/profiles``: one guided sample ≈ 2 unguided ones at SD1.5 512 px, 1.2 at SDXL
    1024 px); recurrence and augmented views cost more than they gain there, and best-of-n over
    guided samples is the way to spend more (``benchmarks/results/latent_guided_best_of_n.md``).

    ``IdentityGuidanceCallback.from_config(cb.config, scorer=..., reference=...)`` rebuilds a
    callback with the same settings (the config keeps ``augment`` as ``[draws, [crop min, max], jitter]``).
    """

    tensor_inputs = ["latents"]

    def __init__(
        self,
        scorer: Scorer,
        reference: EmbeddingOrImages,
        scale: float = 2.0,
        start: float = 0.0,
        end: float = 1.0,
        every: int = 1,
        inner_steps: int = 1,
        decode_size: int | None = 512,
        clip: float | None = 3.0,
        reference_mode: ReferenceMode = "mean",
        decoder: DecoderChoice | None = DEFAULT_DECODER,
        augment: Augment | None = None,
        schedule: str = "constant",
        recurrence: int = 0,
    ):
        super().__init__()
        checks.scorer(scorer)
        if isinstance(augment, (list, tuple)) and len(augment) == 3:  # the config's form (from_config)
            augment = Augment(augment[0], tuple(augment[1]), augment[2])
        self.settings = GuidanceSettings(scale, start, end, every, inner_steps, clip, augment, schedule, recurrence)
        self.decoder = PipelineDecoder(decoder, decode_size)
        self.register_to_config(
            scale=scale, start=start, end=end, every=every, inner_steps=inner_steps, decode_size=decode_size,
            clip=clip, reference_mode=reference_mode, scorer=scorer.name, schedule=schedule, recurrence=recurrence,
            augment=None if augment is None else [augment.draws, list(augment.crop), augment.jitter],
        )
        if self.decoder.config_value is not None:
            self.register_to_config(decoder=self.decoder.config_value)
        self.loss = IdentityLoss(scorer, reference, reference_mode)

    def check(self, pipeline) -> None:
        """Raise ``TypeError`` for a pipeline or scheduler this callback cannot guide."""
        if not isinstance(pipeline, PIPELINES) and self.decoder.choice in CHOICES:
            names = ", ".join(p.__name__ for p in PIPELINES)
            raise TypeError(f"IdentityGuidanceCallback decodes the latents of {names} itself; for "
                            f"{type(pipeline).__name__} pass decoder= (a differentiable latents → images in [0, 1])")
        if not hasattr(pipeline, "scheduler") or not hasattr(pipeline, "num_timesteps"):
            raise TypeError(f"{type(pipeline).__name__} does not follow diffusers' callback conventions "
                            "(it needs .scheduler and .num_timesteps)")
        check_scheduler(pipeline.scheduler)

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        if step_index == 0:
            self.check(pipeline)
        following, num_steps = step_index + 1, pipeline.num_timesteps
        if following < num_steps and self.settings.active(following, num_steps):
            guard = StepGuard(pipeline, lambda out, t, x: self._guided_output(pipeline, following, out, t, x, guard.calls),
                              self.decoder.observe)
        return callback_kwargs

    def _guided_output(self, pipeline, step_index: int, model_output, timestep, sample, calls) -> torch.Tensor:
        view = step_view(pipeline.scheduler, model_output, timestep, sample)
        denoise = None
        if self.settings.recurrence:
            replay = DenoiserReplay(pipeline, calls, model_output, timestep, sample)
            denoise = lambda x: view.x0_of(replay(x), x).to(view.denoised.dtype)  # noqa: E731
        guided = guided_step(sample, view.denoised, self.decoder(pipeline), self.loss, self.settings, step_index,
                             pipeline.num_timesteps, view.signal, view.noise, view.carry, denoise)
        if guided is view.denoised:  # skipped (non-finite loss, gradient or pixels): the step stays unguided
            return model_output
        return view.model_output_for(model_output, guided)
