"""Noise search (Ma et al., 2025, "inference-time scaling beyond denoising steps"): zero-order search.

Random search over initial noises is best-of-N. Zero-order search spends the same budget
around the best noise found so far: each round draws ``neighbours`` noises
``√(1-λ²)·n_best + λ·ε`` (still standard normal), keeps the best if it improves, and stops
when ``budget`` samples have been generated. Gradient-free, any pipeline that takes ``latents``.
"""

from __future__ import annotations

import math

import torch

from ..scorers import Scorer
from ..scorers.base import EmbeddingOrImages
from .best_of_n import BestOfN, Sample


def noise_search(pipe, scorer: Scorer, reference: EmbeddingOrImages, latent_shape: tuple[int, ...],
                 budget: int = 16, neighbours: int = 4, step: float = 0.5, seed: int = 0, **pipe_kwargs) -> BestOfN:
    """Zero-order search over the initial noise ``[*latent_shape]``; ``budget`` samples in all,
    ``neighbours`` per round (the first round is random). Returns every sample, best first."""
    if not isinstance(budget, int) or not isinstance(neighbours, int) or budget < 1 or neighbours < 1:
        raise ValueError(f"budget and neighbours must be integers >= 1, got {budget!r} and {neighbours!r}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and 0 < step <= 1):
        raise ValueError(f"step must be in (0, 1], got {step!r}")
    for reserved in ("latents", "generator", "num_images_per_prompt", "output_type"):
        if reserved in pipe_kwargs:
            raise ValueError(f"noise_search sets '{reserved}' itself")
    g = torch.Generator().manual_seed(seed)
    ref = scorer.as_embedding(reference)
    samples: list[Sample] = []
    best_noise, best_score = None, -math.inf
    while len(samples) < budget:
        count = min(neighbours, budget - len(samples))
        noise = torch.randn(count, *latent_shape, generator=g)
        if best_noise is not None:
            noise = math.sqrt(1 - step**2) * best_noise + step * noise
        images = pipe(latents=noise.to(pipe.device), num_images_per_prompt=count, output_type="pt",
                      **pipe_kwargs).images.float().clamp(0, 1)
        with torch.inference_mode():
            scores = scorer.score(ref, images.to(scorer.device)).float().cpu().tolist()
        for image, score, n in zip(images.cpu(), scores, noise):
            samples.append(Sample(image, score, seed, len(samples)))
            if score > best_score:
                best_score, best_noise = score, n[None]
    ranked = sorted(samples, key=lambda s: s.score, reverse=True)
    return BestOfN(ranked, len(samples), False, [s.score for s in samples])
