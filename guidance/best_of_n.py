"""Automatic best-of-N: generate in batches, score each sample once, keep the most faithful."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..scorers import Scorer, checks
from ..scorers.base import EmbeddingOrImages


@dataclass(frozen=True)
class Sample:
    image: torch.Tensor  # [3,H,W] RGB in [0, 1]
    score: float  # scorer similarity to the reference (higher = more faithful)
    seed: int  # pipe(..., generator=torch.Generator().manual_seed(seed)) regenerates it
    index: int  # position in generation order


@dataclass
class BestOfN:
    samples: list[Sample]  # kept samples, best first
    generated: int  # how many were generated (less than n after an early stop)
    stopped_early: bool
    all_scores: list[float] = field(default_factory=list)  # in generation order

    @property
    def images(self) -> torch.Tensor:
        return torch.stack([s.image for s in self.samples])

    @property
    def scores(self) -> list[float]:
        return [s.score for s in self.samples]

    @property
    def seeds(self) -> list[int]:
        return [s.seed for s in self.samples]


def best_of_n(
    pipe,
    scorer: Scorer,
    reference: EmbeddingOrImages,
    n: int = 8,
    batch_size: int = 4,
    keep: int = 1,
    threshold: float | None = None,
    seed: int = 0,
    progress: bool = True,
    **pipe_kwargs,
) -> BestOfN:
    """Generate up to ``n`` images with ``pipe`` (seeds ``seed .. seed+n-1``, one generator per
    image), score each against the once-embedded ``reference`` and return the ``keep`` best.

    Stops after the batch in which a score reaches ``threshold``. ``pipe_kwargs`` go to the
    pipeline (prompt, steps, ``callback_on_step_end`` for guidance, ...).
    """
    for name, value in (("n", n), ("batch_size", batch_size), ("keep", keep)):
        checks.integer(name, value)
    checks.integer("seed", seed, 0)
    if threshold is not None:
        checks.number("threshold", threshold)
    for reserved in ("generator", "num_images_per_prompt", "output_type"):
        if reserved in pipe_kwargs:
            raise ValueError(f"best_of_n sets '{reserved}' itself; pass seed= instead" if reserved == "generator"
                             else f"best_of_n sets '{reserved}' itself")
    from tqdm.auto import tqdm

    ref = scorer.as_embedding(reference)
    samples: list[Sample] = []
    stopped = False
    with tqdm(total=n, desc="best-of-n", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            seeds = list(range(seed + start, seed + min(start + batch_size, n)))
            # CPU generators on every device (diffusers draws on the CPU and moves the noise): the
            # documented torch.Generator().manual_seed(seed) regenerates each image, on a GPU too.
            generators = [torch.Generator().manual_seed(s) for s in seeds]
            images = pipe(generator=generators, num_images_per_prompt=len(seeds), output_type="pt",
                          **pipe_kwargs).images
            images = images.float().clamp(0, 1)
            with torch.inference_mode():
                scores = scorer.score(ref, images.to(scorer.device)).float().cpu().tolist()
            for offset, (image, score, s) in enumerate(zip(images.cpu(), scores, seeds)):
                samples.append(Sample(image, score, s, start + offset))
            bar.update(len(seeds))
            if threshold is not None and max(scores) >= threshold:
                stopped = len(samples) < n
                break
    ranked = sorted(samples, key=lambda s: s.score, reverse=True)
    return BestOfN(ranked[:keep], len(samples), stopped, [s.score for s in samples])
