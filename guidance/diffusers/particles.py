"""Particle steering: Feynman–Kac steering (Singhal et al., 2025) toward a reference identity.

The batch is k particles sampled together. At chosen steps each particle's clean estimate is
decoded and scored against the reference; the particles are resampled with weights
``exp(λ · potential)`` — ``"difference"``: the score's gain since the last resampling,
``"value"``: the score itself — so promising paths are copied and poor ones dropped; each copy
after the first gets ``renew`` of its noise fresh, so copies part ways even on a deterministic
sampler (where they would otherwise stay identical). Nothing is differentiated: it works with
any scorer, model, sampler and precision, and the sampler's multistep history is resampled
with the particles. ``guidance.generate.particles.steer_particles`` runs it and returns the
particles ranked by their final score.
"""

from __future__ import annotations

import torch
from diffusers.callbacks import PipelineCallback

from ...scorers import Scorer, checks
from ...scorers.base import EmbeddingOrImages
from ..loss import IdentityLoss
from ..resampling import check_steering, renew_copies, resamples_at, select
from .decoder import DEFAULT_DECODER, DecoderChoice, PipelineDecoder
from .schedulers import next_levels, step_view
from .step_guard import StepGuard

# Per-particle tensors a sampler keeps between steps (multistep solvers, PNDM, LMS).
SAMPLER_STATE = ("model_outputs", "last_sample", "sample", "ets", "cur_sample", "derivatives", "prev_derivative")


def resample_state(scheduler, index: torch.Tensor, batch: int) -> None:
    """Reorder the sampler's per-particle history like the particles."""
    for name in SAMPLER_STATE:
        value = getattr(scheduler, name, None)
        if isinstance(value, torch.Tensor) and value.shape[:1] == (batch,):
            setattr(scheduler, name, value[index.to(value.device)])
        elif isinstance(value, list):
            setattr(scheduler, name, [v[index.to(v.device)] if isinstance(v, torch.Tensor) and v.shape[:1] == (batch,)
                                      else v for v in value])


class ParticleSteering(PipelineCallback):
    """``pipe(..., num_images_per_prompt=k, callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"])``.

    ``every``: resample every k-th step within ``[start, end)`` (fractions of the steps).
    ``temperature`` λ: how strongly scores pick particles (0 = no selection). ``renew``: the
    share of a copy's noise drawn fresh after a resampling (0 = exact copies). ``decoder``:
    what scores the particles' clean estimates: ``"auto"`` (default: the family's TAESD when at hand,
    else the VAE), ``"tiny"``, ``"vae"``, or a path, module or callable (``guidance.diffusers.decoder``). ``seed`` makes resampling repeatable.
    """

    tensor_inputs = ["latents"]

    def __init__(self, scorer: Scorer, reference: EmbeddingOrImages, every: int = 4, start: float = 0.0,
                 end: float = 0.8, temperature: float = 20.0, potential: str = "difference", renew: float = 1.0,
                 decoder: DecoderChoice | None = DEFAULT_DECODER, decode_size: int | None = 512, seed: int = 0):
        super().__init__()
        checks.scorer(scorer)
        check_steering(every, start, end, temperature, potential, renew)
        checks.integer("seed", seed, 0)
        self.decoder = PipelineDecoder(decoder, decode_size)
        self.register_to_config(every=every, start=start, end=end, temperature=temperature, potential=potential,
                                renew=renew, decode_size=decode_size, seed=seed, scorer=scorer.name)
        if self.decoder.config_value is not None:
            self.register_to_config(decoder=self.decoder.config_value)
        self.loss = IdentityLoss(scorer, reference)
        self.every, self.start, self.end, self.temperature, self.potential = every, start, end, temperature, potential
        self.renew, self.seed = renew, seed
        self._denoised: tuple | None = None  # (x̂0, signal, noise of the step's result) recorded before a resampling
        self._previous: torch.Tensor | None = None
        self.resamplings = 0  # how many times particles were resampled in the last run
        self.scored = 0  # particle scorings in the last run

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        num_steps = pipeline.num_timesteps
        self._scheduler = pipeline.scheduler
        if step_index == 0:
            self._previous, self.resamplings, self.scored, self._denoised = None, 0, 0, None
            self._generator = torch.Generator().manual_seed(self.seed)
        recorded, self._denoised = self._denoised, None
        if recorded is not None:
            callback_kwargs["latents"] = self._resample(pipeline, *recorded, callback_kwargs["latents"])
        if step_index + 1 < num_steps and resamples_at(step_index + 1, num_steps, self.every, self.start, self.end):
            StepGuard(pipeline, self._record, self.decoder.observe)
        return callback_kwargs

    def _record(self, model_output, timestep, sample):
        denoised = step_view(self._scheduler, model_output, timestep, sample).denoised
        self._denoised = (denoised, *next_levels(self._scheduler, timestep))
        return model_output

    @torch.no_grad()
    def _resample(self, pipeline, denoised: torch.Tensor, signal: float, noise: float,
                  latents: torch.Tensor) -> torch.Tensor:
        decode = self.decoder(pipeline)
        with torch.inference_mode():
            scores = 1.0 - self.loss(decode(denoised).float()).float().cpu()
        self.scored += len(scores)
        index = select(scores, self._previous, self.temperature, self.potential, self._generator)
        self._previous = scores[index]
        self.resamplings += 1
        resample_state(pipeline.scheduler, index, len(scores))
        where = index.to(latents.device)
        return renew_copies(latents[where], denoised[where.to(denoised.device)], index, signal, noise, self.renew,
                            self._generator)
