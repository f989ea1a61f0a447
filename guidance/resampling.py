"""The selection step of particle steering (Feynman–Kac steering), shared by the diffusers callback
and the ComfyUI sampler: when to resample, which particles survive, and how their copies part ways.
Pure torch."""

from __future__ import annotations

import torch

from ..scorers import checks

POTENTIALS = ("difference", "value")


def check_steering(every: int, start: float, end: float, temperature: float, potential: str,
                   renew: float) -> None:
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}, got {potential!r}")
    checks.integer("every", every)
    checks.window(start, end)
    checks.number("temperature", temperature, 0.0)
    checks.number("renew", renew, 0.0, 1.0)


def resamples_at(step_index: int, num_steps: int, every: int, start: float, end: float) -> bool:
    """Resample before step ``step_index`` (never before the first)."""
    return step_index > 0 and start <= step_index / num_steps < end and step_index % every == 0


def select(scores: torch.Tensor, previous: torch.Tensor | None, temperature: float, potential: str,
           generator: torch.Generator) -> torch.Tensor:
    """Indices of the surviving particles (multinomial, weights ``exp(temperature · potential)``);
    ``potential`` is the score (``value``) or its gain since the last selection (``difference``)."""
    value = scores - previous if (potential == "difference" and previous is not None) else scores
    logits = temperature * torch.nan_to_num(value.float(), nan=-1e4)
    return torch.multinomial(torch.softmax(logits, 0), len(scores), replacement=True, generator=generator)


def renew_copies(latents: torch.Tensor, denoised: torch.Tensor, index: torch.Tensor, signal: float, noise: float,
                 renew: float, generator: torch.Generator) -> torch.Tensor:
    """Resampled particles ``latents`` (already ``[index]``-ed; ``denoised``: their clean estimates,
    likewise) with every copy after the first of a particle given ``renew`` of its noise variance
    fresh: x' = s·x̂0 + σ·(√(1−renew)·ε̂ + √renew·ξ), ε̂ = (x − s·x̂0)/σ, at the level (s, σ) of
    ``latents``. On a deterministic sampler the copies would otherwise stay identical to the end,
    and resampling would only shrink the set of distinct samples."""
    seen: set[int] = set()
    copies = []
    for i in index.tolist():
        copies.append(i in seen)
        seen.add(i)
    if renew == 0 or noise <= 0 or not any(copies):
        return latents
    implied = (latents.float() - signal * denoised.float()) / noise
    fresh = torch.randn(latents.shape, generator=generator).to(latents.device)
    renewed = signal * denoised.float() + noise * ((1 - renew) ** 0.5 * implied + renew**0.5 * fresh)
    mask = torch.tensor(copies, device=latents.device).view(-1, *[1] * (latents.dim() - 1))
    return torch.where(mask, renewed.to(latents.dtype), latents)
