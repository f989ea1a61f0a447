"""The selection step of particle steering (Feynman–Kac steering), shared by the diffusers callback
and the ComfyUI sampler: when to resample and which particles survive. Pure torch."""

from __future__ import annotations

import math

import torch

POTENTIALS = ("difference", "value")


def check_steering(every: int, start: float, end: float, temperature: float, potential: str) -> None:
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}, got {potential!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    if not (isinstance(start, (int, float)) and isinstance(end, (int, float)) and 0.0 <= start <= end <= 1.0):
        raise ValueError(f"need 0 <= start <= end <= 1, got start={start}, end={end}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


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
