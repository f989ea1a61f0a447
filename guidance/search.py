"""Noise search (Ma et al., 2025, "inference-time scaling beyond denoising steps").

Random search over initial noises is best-of-N. Two searches spend the same budget better:

- **zero-order**: each round draws ``neighbours`` noises ``√(1-λ²)·n_best + λ·ε`` (λ = ``mix``) (still standard
  normal) around the best noise found so far and keeps the best if it improves;
- **paths**: after ``starts`` random samples, the ``parents`` best samples so far are re-noised to an
  intermediate level (``strength`` of the way back to pure noise, as img2img/SDEdit does) and
  denoised again with fresh noise — branches of the promising paths — until the budget is spent.

The loops here know nothing of pipelines: they call back to generate and score, so the diffusers
drivers (``guidance.generate.search``) and the ComfyUI node run the same search. ``budget`` is
in full samples; a branch costs ``strength`` of one (it runs that fraction of the steps).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..scorers import checks


def zero_order(evaluate: Callable[[torch.Tensor, int], Sequence[float]], draw: Callable[[int, int], torch.Tensor],
               budget: int, neighbours: int = 8, mix: float = 0.75,
               stop: Callable[[float], bool] | None = None) -> list[float]:
    """Run the zero-order search; ``draw(count, index)`` gives ``count`` fresh standard-normal noises
    for samples ``index…``, ``evaluate(noises, index)`` generates and scores them. Returns every
    score in generation order (``stop(best)`` ends it after a round)."""
    checks.integer("budget", budget)
    checks.integer("neighbours", neighbours)
    checks.number("mix", mix, 0.0, 1.0, low_open=True)
    scores: list[float] = []
    best_noise, best = None, -math.inf
    while len(scores) < budget and not (stop and stop(best)):
        count = min(neighbours, budget - len(scores))
        noise = draw(count, len(scores))
        if best_noise is not None:
            noise = math.sqrt(1 - mix**2) * best_noise + mix * noise
        round_scores = list(evaluate(noise, len(scores)))
        for score, n in zip(round_scores, noise):
            if score > best:
                best, best_noise = score, n[None]
        scores += round_scores
    return scores


def path_plan(budget: int, starts: int | None = None, parents: int = 2, strength: float = 0.5) -> tuple[int, int]:
    """(random starts, branches) that ``paths`` runs for ``budget`` full samples."""
    checks.integer("budget", budget)
    checks.integer("parents", parents)
    checks.number("strength", strength, 0.0, 1.0, low_open=True)
    starts = max(1, budget // 2) if starts is None else starts
    checks.integer("starts", starts)
    if starts > budget:
        raise ValueError(f"starts ({starts}) must not exceed the budget ({budget})")
    return starts, int((budget - starts) / strength + 1e-9)


def paths(sample: Callable[[int, int], Sequence[float]], branch: Callable[[list[int], int], Sequence[float]],
          budget: int, starts: int | None = None, parents: int = 2, strength: float = 0.5,
          stop: Callable[[float], bool] | None = None) -> list[float]:
    """Run the search over paths; ``sample(count, index)`` generates and scores ``count`` random
    samples, ``branch(parents, index)`` re-noises the samples at ``parents`` (generation indices)
    to ``strength`` and denoises each once more. Returns every score in generation order."""
    starts, branches = path_plan(budget, starts, parents, strength)
    scores = list(sample(starts, 0))
    while branches > 0 and not (stop and stop(max(scores))):
        ranked = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        chosen = ranked[: min(parents, branches)]
        scores += list(branch(chosen, len(scores)))
        branches -= len(chosen)
    return scores


def __getattr__(name):  # the pipeline drivers lived here before 0.2
    if name in ("noise_search", "path_search", "image_to_image"):
        from .moved import forward

        return forward("search", "generate.search")[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
