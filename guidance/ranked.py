"""What every sample-and-select method returns, and the one best-of-N loop.

Best-of-N, noise and path search and particle steering all end the same way: samples scored
against the reference, best first. ``Ranked`` is that result; ``best_of_batches`` is the
best-of-N loop, knowing nothing of pipelines, so the diffusers driver and the ComfyUI node
run the same selection (seeds, batches, early stop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..scorers import Embedding, Scorer, checks
from ..scorers.ranking import rank


@dataclass(frozen=True)
class Sample:
    image: torch.Tensor  # [3,H,W] RGB in [0, 1]
    score: float  # scorer similarity to the reference (higher = more faithful)
    seed: int  # what regenerates it (per method: best-of-N's torch.Generator().manual_seed(seed), …)
    index: int  # position in generation order


@dataclass
class Ranked:
    """Scored samples, best first: ``samples`` (the ones kept), how many were ``generated``
    (fewer than asked after an early stop), ``stopped_early``, and ``all_scores`` in
    generation order."""

    samples: list[Sample]
    generated: int
    stopped_early: bool
    all_scores: list[float] = field(default_factory=list)

    @property
    def images(self) -> torch.Tensor:
        return torch.stack([s.image for s in self.samples])

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.samples]

    @property
    def seeds(self) -> list[int]:
        return [s.seed for s in self.samples]

    @classmethod
    def of(cls, images: Sequence[torch.Tensor], scores: Sequence[float], seeds: Sequence[int],
           keep: int | None = None, stopped_early: bool = False) -> "Ranked":
        """Rank samples given in generation order (ties keep that order); keep the ``keep`` best."""
        samples = [Sample(image, float(score), seed, i) for i, (image, score, seed) in enumerate(zip(images, scores, seeds))]
        kept = rank([s.score for s in samples], top_k=keep).kept
        return cls([samples[i] for i in kept], len(samples), stopped_early, [s.score for s in samples])


def scores_of(scorer: Scorer, reference: Embedding, images: torch.Tensor) -> list[float]:
    """Each image's similarity to the reference, as floats (no graph kept)."""
    with torch.inference_mode():
        return scorer.score(reference, images.to(scorer.device)).float().cpu().tolist()


def check_best_of(n: int, batch_size: int, keep: int, seed: int, threshold: float | None) -> None:
    """Best-of-N's settings, checked before anything is loaded or sampled."""
    for name, value in (("n", n), ("batch_size", batch_size), ("keep", keep)):
        checks.integer(name, value)
    checks.integer("seed", seed, 0)
    if threshold is not None:
        checks.number("threshold", threshold)


def best_of_batches(generate: Callable[[list[int]], tuple[Sequence[torch.Tensor], Sequence[float]]], n: int,
                    batch_size: int, seed: int = 0, keep: int = 1, threshold: float | None = None,
                    advance: Callable[[int], None] | None = None) -> Ranked:
    """Best-of-N: ``generate(seeds)`` makes and scores one image per seed, in batches of
    ``batch_size`` over seeds ``seed .. seed+n-1``; after the batch in which a score reaches
    ``threshold`` it stops. ``advance(count)`` reports progress. Returns the ``keep`` best."""
    check_best_of(n, batch_size, keep, seed, threshold)
    if threshold is not None and batch_size >= n:
        checks.no_effect(f"threshold {threshold:g} has no effect: it stops between batches, and batch_size "
                         f"{batch_size} makes all {n} samples one batch")
    images: list[torch.Tensor] = []
    scores: list[float] = []
    seeds: list[int] = []
    for start in range(0, n, batch_size):
        batch = list(range(seed + start, seed + min(start + batch_size, n)))
        batch_images, batch_scores = generate(batch)
        images += list(batch_images)
        scores += [float(s) for s in batch_scores]
        seeds += batch
        if advance is not None:
            advance(len(batch))
        if threshold is not None and max(batch_scores) >= threshold:
            break
    return Ranked.of(images, scores, seeds, keep, stopped_early=len(scores) < n)
