"""Noise search (Ma et al., 2025, "inference-time scaling beyond denoising steps").

Random search over initial noises is best-of-N. Two searches spend the same budget better:

- **zero-order**: each round draws ``neighbours`` noises ``√(1-λ²)·n_best + λ·ε`` (still standard
  normal) around the best noise found so far and keeps the best if it improves;
- **paths**: after ``starts`` random samples, the ``parents`` best samples so far are re-noised to an
  intermediate level (``strength`` of the way back to pure noise, as img2img/SDEdit does) and
  denoised again with fresh noise — branches of the promising paths — until the budget is spent.

The loops (``zero_order``, ``paths``) know nothing of pipelines: they call back to generate and
score, so the diffusers functions below and the ComfyUI node run the same search. ``budget`` is
in full samples; a branch costs ``strength`` of one (it runs that fraction of the steps).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..scorers import Scorer, checks
from ..scorers.base import EmbeddingOrImages
from .best_of_n import BestOfN, Sample


def zero_order(evaluate: Callable[[torch.Tensor, int], Sequence[float]], draw: Callable[[int, int], torch.Tensor],
               budget: int, neighbours: int = 8, step: float = 0.75,
               stop: Callable[[float], bool] | None = None) -> list[float]:
    """Run the zero-order search; ``draw(count, index)`` gives ``count`` fresh standard-normal noises
    for samples ``index…``, ``evaluate(noises, index)`` generates and scores them. Returns every
    score in generation order (``stop(best)`` ends it after a round)."""
    checks.integer("budget", budget)
    checks.integer("neighbours", neighbours)
    checks.number("step", step, 0.0, 1.0, low_open=True)
    scores: list[float] = []
    best_noise, best = None, -math.inf
    while len(scores) < budget and not (stop and stop(best)):
        count = min(neighbours, budget - len(scores))
        noise = draw(count, len(scores))
        if best_noise is not None:
            noise = math.sqrt(1 - step**2) * best_noise + step * noise
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


def _prepare(scorer: Scorer, reference: EmbeddingOrImages, pipe_kwargs: dict):
    for reserved in ("latents", "generator", "num_images_per_prompt", "output_type", "image", "strength"):
        if reserved in pipe_kwargs:
            raise ValueError(f"noise search sets '{reserved}' itself")
    return scorer.as_embedding(reference)


def _scored(scorer: Scorer, ref, images: torch.Tensor) -> list[float]:
    with torch.inference_mode():
        return scorer.score(ref, images.to(scorer.device)).float().cpu().tolist()


def _result(images: list[torch.Tensor], scores: list[float], seeds: list[int]) -> BestOfN:
    samples = [Sample(*sample, i) for i, sample in enumerate(zip(images, scores, seeds))]
    return BestOfN(sorted(samples, key=lambda s: s.score, reverse=True), len(samples), False, scores)


def noise_search(pipe, scorer: Scorer, reference: EmbeddingOrImages, latent_shape: tuple[int, ...],
                 budget: int = 16, neighbours: int = 8, step: float = 0.75, seed: int = 0, **pipe_kwargs) -> BestOfN:
    """Zero-order search over the initial noise ``[*latent_shape]``; ``budget`` samples in all,
    ``neighbours`` per round (the first round is random). Returns every sample, best first (each
    with the search's ``seed``: a sample is regenerated by rerunning the search)."""
    ref = _prepare(scorer, reference, pipe_kwargs)
    g = torch.Generator().manual_seed(seed)
    images: list[torch.Tensor] = []

    def evaluate(noise: torch.Tensor, index: int) -> list[float]:
        out = pipe(latents=noise.to(pipe.device), num_images_per_prompt=noise.shape[0], output_type="pt",
                   **pipe_kwargs).images.float().clamp(0, 1)
        images.extend(out.cpu())
        return _scored(scorer, ref, out)

    scores = zero_order(evaluate, lambda count, _: torch.randn(count, *latent_shape, generator=g), budget,
                        neighbours, step)
    return _result(images, scores, [seed] * len(scores))


def image_to_image(pipe):
    """``pipe`` when it re-noises images itself (it takes ``image`` and ``strength``), else its
    image-to-image sibling sharing the same components (SD1.5, SDXL, SD3, Flux, …)."""
    import inspect

    if {"image", "strength"} <= set(inspect.signature(pipe.__call__).parameters):
        return pipe
    from diffusers import AutoPipelineForImage2Image

    try:
        return AutoPipelineForImage2Image.from_pipe(pipe)
    except Exception as error:
        raise TypeError(f"path_search re-noises samples with an image-to-image pipeline; {type(pipe).__name__} has "
                        f"none that diffusers knows ({error}): pass img2img=") from None


def path_search(pipe, scorer: Scorer, reference: EmbeddingOrImages, budget: int = 16, starts: int | None = None,
                parents: int = 2, strength: float = 0.5, seed: int = 0, img2img=None, **pipe_kwargs) -> BestOfN:
    """Search over paths: ``starts`` random samples (default half the budget), then branches of the
    ``parents`` best so far, each re-noised to ``strength`` and denoised by ``img2img`` (a pipeline
    called with ``image=`` [k,3,H,W] in [0, 1], ``strength=`` and ``num_images_per_prompt=k``; default:
    ``pipe`` itself when it takes ``image`` and ``strength``, else diffusers'
    ``AutoPipelineForImage2Image.from_pipe(pipe)``, which shares its components). Sample i is
    generated with ``torch.Generator().manual_seed(seed + i)``: the random starts are exactly
    best-of-N's samples; a branch also needs its parent. Returns every sample, best first."""
    ref = _prepare(scorer, reference, pipe_kwargs)
    img2img = image_to_image(pipe) if img2img is None else img2img
    images: list[torch.Tensor] = []

    def generate(call, count: int, index: int, **kwargs) -> list[float]:
        # Generator seed + i for sample i: the random starts are best-of-N's samples.
        generators = [torch.Generator().manual_seed(seed + index + i) for i in range(count)]
        out = call(generator=generators if count > 1 else generators[0], num_images_per_prompt=count,
                   output_type="pt", **kwargs, **pipe_kwargs).images.float().clamp(0, 1)
        images.extend(out.cpu())
        return _scored(scorer, ref, out)

    def branch(chosen: list[int], index: int) -> list[float]:
        parent_images = torch.stack([images[p] for p in chosen]).to(img2img.device)
        return generate(img2img, len(chosen), index, image=parent_images, strength=strength)

    scores = paths(lambda count, index: generate(pipe, count, index), branch, budget, starts, parents, strength)
    return _result(images, scores, [seed + i for i in range(len(scores))])
