"""The selection step of particle steering (Feynman–Kac steering), shared by the diffusers callback
and the ComfyUI sampler: when to resample and which particles survive. Pure torch."""

from __future__ import annotations

import torch

from ..scorers import checks

POTENTIALS = ("difference", "value")


def check_steering(every: int, start: float, end: float, temperature: float, potential: str) -> None:
    if potential not in POTENTIALS:
        raise ValueError(f"potential must be one of {', '.join(POTENTIALS)}, got {potential!r}")
    checks.integer("every", every)
    checks.window(start, end)
    checks.number("temperature", temperature, 0.0)


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
