"""One identity-guidance step on the model's clean estimate (x̂0, "denoised").

Training-free guidance in the line of Universal Guidance (Bansal et al., 2023) and FreeDoM
(Yu et al., 2023): differentiate a loss on the decoded clean estimate and move the estimate
against the gradient. The update, for a clean latent estimate x̂0 at noise level t::

    g    = ∇_{x̂0} L(decode(x̂0))          identity loss through the decoder and the scorer
    ĝ    = g / rms(g)                       per sample, so ``scale`` is in latent units
    ĝ    = clamp(ĝ, -clip, clip)            optional, tames outlier pixels
    x̂0' = x̂0 - scale · w_t · ĝ,   w_t = σ_t² / (s_t² + σ_t²)

where x_t = s_t·x0 + σ_t·ε (w_t = 1 - ᾱ_t for VP models, σ²/(1+σ²) for EDM sigmas,
σ²/((1-σ)²+σ²) for rectified flow): strong while the estimate is blurry, fading as it
sharpens — Universal Guidance's √(1-ᾱ_t) on ε, mapped to x̂0. ``inner_steps`` repeats the
update from the new estimate. Non-finite decoded pixels, loss or gradient skip the step with
a warning and return the input unchanged; scale 0 or a step outside the window never runs a decoder.

Self-recurrence (Universal Guidance's k repeats, ``recurrent_denoised``): re-noise the guided
estimate to the step's own noise level as a deterministic step to the next level followed by
fresh noise back up would (x_t' = s·x̂0' + σ·(c·ε̂ + √(1-c²)·ξ), the carry c = σ̃_next/σ̃ with σ̃ = σ/s),
let the model denoise that sample, guide again; k times. The model's own denoising pulls the
guided change back toward images it can make, so what survives is what the model can render.
Unlike Universal Guidance the sampler then steps from *its* sample with the last estimate (the
same hand-over as without recurrence), so every sampler — multistep, ancestral, UniPC's
corrector — works with it, and diffusers and ComfyUI mean the same thing by it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..scorers import checks
from .augment import Augment

Decode = Callable[[torch.Tensor], torch.Tensor]  # latents → [B,3,H,W] RGB in [0, 1]
Loss = Callable[[torch.Tensor], torch.Tensor]  # images → per-image loss [B]
Denoise = Callable[[torch.Tensor], torch.Tensor]  # a sample at the step's noise level → the model's x̂0 there


SCHEDULES = ("constant", "decay")


@dataclass(frozen=True)
class GuidanceSettings:
    """``scale``: step size (0 = off). ``start``/``end``: the guided part of the sampling, as
    fractions of its steps (step i of N is guided when start <= i/N < end — the same rule in
    diffusers and ComfyUI). ``every``: guide every k-th step. ``inner_steps``: updates per
    guided step. ``clip``: clamp of the normalised gradient (``None`` = off). ``augment``:
    average the loss over random views of the decoded image (``Augment``; ``None`` = one
    plain view). ``schedule``: ``"constant"`` scale, or ``"decay"`` linearly to 0 over the
    guided part. ``recurrence``: self-recurrence repeats per guided step (each one more
    denoiser evaluation and guidance update; 0 = off)."""

    scale: float = 1.0
    start: float = 0.0
    end: float = 0.5
    every: int = 1
    inner_steps: int = 1
    clip: float | None = 3.0
    augment: Augment | None = None
    schedule: str = "constant"
    recurrence: int = 0

    def __post_init__(self):
        checks.number("scale", self.scale)
        checks.window(self.start, self.end)
        checks.integer("every", self.every)
        checks.integer("inner_steps", self.inner_steps)
        if self.clip is not None:
            checks.number("clip", self.clip, 0.0, low_open=True)
        if self.augment is not None and not isinstance(self.augment, Augment):
            raise TypeError(f"augment must be an Augment or None, got {type(self.augment).__name__}")
        checks.integer("recurrence", self.recurrence, 0)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def active(self, step_index: int, num_steps: int) -> bool:
        """Whether step ``step_index`` (0-based) of ``num_steps`` is guided."""
        if self.scale == 0 or num_steps <= 0:
            return False
        fraction = step_index / num_steps
        return self.start <= fraction < self.end and step_index % self.every == 0

    def multiplier(self, step_index: int, num_steps: int) -> float:
        """The schedule's factor on ``scale`` at a guided step."""
        if self.schedule == "constant" or num_steps <= 0:
            return 1.0
        span = max(self.end - self.start, 1e-12)
        return max(0.0, 1.0 - (step_index / num_steps - self.start) / span)


def noise_fraction(signal: float, noise: float) -> float:
    """w_t = σ² / (s² + σ²) for x_t = s·x0 + σ·ε: 1 at pure noise, 0 when clean."""
    return noise * noise / (signal * signal + noise * noise)


def noise_carry(signal: float, noise: float, next_signal: float, next_noise: float) -> float:
    """c = σ̃_next/σ̃ (σ̃ = σ/s) from this level to the next: the share of the implied noise a
    deterministic step keeps; 0 at pure noise (s = 0, a flow model's σ = 1)."""
    if min(signal, noise, next_signal) <= 0:
        return 0.0
    return (next_noise / next_signal) / (noise / signal)


VIEW_SEEDS = 1 << 32  # views draw from seeds above this, so they never share a stream with re-noising


def guided_step(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    decode: Decode,
    loss: Loss,
    settings: GuidanceSettings,
    index: int,
    num_steps: int,
    signal: float,
    noise: float,
    carry: float = 0.0,
    denoise: Denoise | None = None,
) -> torch.Tensor:
    """The guided clean estimate of sampler step ``index`` of ``num_steps``: what the diffusers
    callback and the ComfyUI patch both call, so a setting means the same in both.

    ``sample`` x_t = ``signal``·x0 + ``noise``·ε is the sampler's sample and ``denoised`` the
    model's x̂0 of it; ``carry`` (``noise_carry`` to the next level) and ``denoise`` (the model
    at a re-noised sample) serve self-recurrence only. Returns ``denoised`` itself when the
    step is skipped (non-finite loss, gradient or pixels), so a caller can keep it unguided.
    """
    weight = noise_fraction(signal, noise) * settings.multiplier(index, num_steps)

    def guide(estimate: torch.Tensor) -> torch.Tensor:
        return guided_denoised(estimate, decode, loss, weight, settings, seed=index)

    if not settings.recurrence:
        return guide(denoised)
    if denoise is None:
        raise ValueError("guided_step: recurrence needs denoise (the model at a re-noised sample)")
    return recurrent_denoised(sample, denoised, denoise, guide, signal, noise, carry, settings.recurrence, index)


def guided_denoised(
    denoised: torch.Tensor,
    decode: Decode,
    loss: Loss,
    weight: float,
    settings: GuidanceSettings,
    seed: int = 0,
) -> torch.Tensor:
    """Return the guided clean estimate (see the module docstring for the rule).

    ``seed`` picks the random views (``settings.augment``). Both front-ends pass the step index:
    new views at every step, the same ones in a step's recurrence rounds and on a rerun (new
    views per round measured no better on the proving ground). Works under
    ``torch.inference_mode`` and ``torch.no_grad`` callers (ComfyUI, diffusers): the gradient is
    computed on a normal-tensor copy. Nothing of the graph outlives the call.
    """
    if settings.scale == 0 or weight == 0:
        return denoised
    with torch.inference_mode(False), torch.enable_grad():
        x = denoised.detach().clone()
        views = torch.Generator().manual_seed(VIEW_SEEDS + seed)
        for _ in range(settings.inner_steps):
            x.requires_grad_(True)
            images = decode(x)
            if not torch.isfinite(images).all():  # e.g. an fp16 VAE overflowing
                warnings.warn("identity guidance: the decoder gave non-finite pixels, step skipped",
                              RuntimeWarning, stacklevel=2)
                return denoised
            if settings.augment is not None and settings.augment.draws > 0:
                value = loss(settings.augment(images, views)).sum() / settings.augment.draws
            else:
                value = loss(images).sum()
            if not torch.isfinite(value):
                warnings.warn(f"identity guidance: loss is {value.item()}, step skipped", RuntimeWarning, stacklevel=2)
                return denoised
            (grad,) = torch.autograd.grad(value, x)
            if not torch.isfinite(grad).all():
                warnings.warn("identity guidance: non-finite gradient, step skipped", RuntimeWarning, stacklevel=2)
                return denoised
            dims = tuple(range(1, grad.dim()))
            rms = grad.pow(2).mean(dim=dims, keepdim=True).sqrt()
            direction = grad / rms.clamp_min(1e-12)
            if settings.clip is not None:
                direction = direction.clamp(-settings.clip, settings.clip)
            x = (x - settings.scale * weight * direction).detach()
    return x.to(denoised.dtype)


def recurrent_denoised(
    sample: torch.Tensor,
    denoised: torch.Tensor,
    denoise: Denoise,
    guide: Callable[[torch.Tensor], torch.Tensor],
    signal: float,
    noise: float,
    carry: float,
    repeats: int,
    index: int = 0,
) -> torch.Tensor:
    """The guided clean estimate after ``repeats`` rounds of self-recurrence (module docstring).

    ``sample`` x_t = signal·x0 + noise·ε is the sampler's sample, ``denoised`` the model's x̂0 of
    it, ``guide`` one guidance update of an x̂0 (``guided_denoised`` with its settings), ``carry``
    c = σ̃_next/σ̃ in [0, 1] (``noise_carry``). The fresh noise of round r of sampler step
    ``index`` comes from seed ``1000·index + r``: a rerun repeats it, in diffusers and ComfyUI alike.
    An update that ``guide`` skips (returns its input) leaves the whole step unguided: ``denoised``.
    """
    guided = guide(denoised)
    if repeats == 0 or noise <= 0 or signal <= 0 or guided is denoised:
        return guided
    carry = min(max(carry, 0.0), 1.0)
    for r in range(repeats):
        implied = (sample.float() - signal * guided.float()) / noise  # the ε a deterministic step would keep
        fresh = torch.randn(sample.shape, generator=torch.Generator().manual_seed(1000 * index + r)).to(implied.device)
        sample = (signal * guided.float() + noise * (carry * implied + (1 - carry * carry) ** 0.5 * fresh)).to(sample.dtype)
        estimate = denoise(sample)
        guided = guide(estimate)
        if guided is estimate:  # a skipped update (non-finite loss, gradient or pixels): the step stays unguided
            return denoised
    return guided
