"""Ranking and filtering by score, and the one readable scale scores are shown on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from . import checks

OnEmpty = Literal["keep_best", "error"]


def readable(similarity: float) -> float:
    """Scores for people (a float or a tensor): ``100 × similarity`` (DreamBench++'s convention for cosine metrics;
    for ID-Sim ``100 × (1 - distance)``). 100 = identical; higher = same identity more likely."""
    return 100.0 * similarity


@dataclass(frozen=True)
class Ranking:
    kept: list[int]  # indices into the input, best first
    rejected: list[int]  # the others, best first


def rank(
    scores: Sequence[float], top_k: int | None = None, threshold: float | None = None, on_empty: OnEmpty = "keep_best"
) -> Ranking:
    """Sort by score (descending, stable), keep those ``>= threshold``, then the first ``top_k``.

    When nothing passes: ``keep_best`` keeps the single best; ``error`` raises ``ValueError``.
    """
    if top_k is not None:
        checks.integer("top_k", top_k)
    if threshold is not None:
        checks.number("threshold", threshold)
    if on_empty not in ("keep_best", "error"):
        raise ValueError(f"on_empty must be 'keep_best' or 'error', got {on_empty!r}")
    scores = finite_scores(scores)
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    kept = [i for i in order if threshold is None or scores[i] >= threshold]
    if top_k is not None:
        kept = kept[:top_k]
    if not kept and order:
        if on_empty == "error":
            best = scores[order[0]]
            raise ValueError(f"no image reached the threshold {threshold} (best score {best:.4f})")
        kept = order[:1]
    chosen = set(kept)
    return Ranking(kept, [i for i in order if i not in chosen])


def finite_scores(scores) -> list[float]:
    """Scores as floats; a NaN would sort anywhere, so it is refused with its position."""
    if isinstance(scores, (str, bytes)) or not hasattr(scores, "__len__") or not hasattr(scores, "__iter__"):
        raise TypeError(f"scores must be a sequence of numbers, got {checks.given(scores)}")
    values = []
    for i, score in enumerate(scores):
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise TypeError(f"scores[{i}] is {score!r}, not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"scores[{i}] is {value}: a score must be a finite number")
        values.append(value)
    return values
