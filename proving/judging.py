"""How samples are judged: by the oracle and the held-out judge, never by the scorer that steered.

For samples generated for reference identities: oracle identity accuracy (the headline),
near-twin confusion, category accuracy, oracle confidence (realism), guide and judge
similarity to the reference image, and two Fréchet distances of judge features: to fresh
renders of all identities (``fd``), and to fresh renders of the identities the oracle sees in
the samples, as many (``fd_seen``). Steering *should* change which identities appear, and ``fd``
counts that as unrealism (fresh renders of the task identities themselves score worse than
unguided samples); ``fd_seen`` compares each sample with real images of what it shows, so it
measures realism alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from scipy import linalg

from ..scorers.base import Scorer
from .models import PREPROCESS, Oracle, load_guide, load_judge
from .world import FRESH_SEED, IDENTITIES, NUM_IDENTITIES, render_batch

REFERENCE_SEED = FRESH_SEED + 500_000_000  # the reference images' own contexts
FEATURE_SET_SEED = FRESH_SEED + 100_000_000  # the fresh renders the Fréchet distance compares to
SEEN_SET_SEED = FRESH_SEED + 150_000_000  # fresh renders of the identities the oracle sees (fd_seen)


def reference_image(identity: int) -> torch.Tensor:
    """The reference image of ``identity``: a render in a context of its own, ``[3,H,W]``."""
    return render_batch([identity], [REFERENCE_SEED + identity])[0]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` (as FID does)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product (few samples): nudge as FID implementations do
        eps = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@dataclass
class Scores:
    """Per-sample judgements, in the order of the samples."""

    predicted: np.ndarray  # oracle class
    confidence: np.ndarray  # oracle max probability
    guide: np.ndarray  # guide similarity to the reference image
    judge: np.ndarray  # held-out judge similarity to the reference image
    features: np.ndarray  # judge features [N, 96] (Fréchet distance)


class Judges:
    """The oracle, the held-out judge and (only to report its own view) the guide scorer."""

    def __init__(self, guide: Scorer | None = None, feature_renders: int = 2048):
        self.oracle = Oracle()
        self.judge = load_judge()
        self.guide = guide if guide is not None else load_guide()
        self.feature_renders = feature_renders

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> np.ndarray:
        return torch.cat([self.judge.net.features(PREPROCESS(images[i:i + 512].float()))
                          for i in range(0, len(images), 512)]).numpy().astype(np.float64)

    @cached_property
    def render_features(self) -> np.ndarray:
        ids = np.arange(self.feature_renders) % NUM_IDENTITIES
        images = render_batch(ids, FEATURE_SET_SEED + np.arange(self.feature_renders))
        return self.features(images)

    @torch.inference_mode()
    def score(self, images: torch.Tensor, references: Sequence[int]) -> Scores:
        """Judge ``[N,3,H,W]`` samples, sample i made for reference identity ``references[i]``."""
        refs = torch.stack([reference_image(r) for r in references])
        probs = self.oracle.probabilities(images)
        confidence, predicted = probs.max(-1)
        guide = self.guide.similarity(self.guide.embed(refs), self.guide.embed(images.to(self.guide.device)))
        judge = self.judge.similarity(self.judge.embed(refs), self.judge.embed(images))
        return Scores(predicted.numpy(), confidence.numpy(), guide.cpu().numpy(), judge.numpy(),
                      self.features(images))

    def summary(self, scores: Scores, references: Sequence[int]) -> dict:
        refs = np.asarray(references)
        twins = np.array([IDENTITIES[r].twin for r in refs])
        categories = np.array([IDENTITIES[r].category for r in refs])
        hit = scores.predicted == refs
        n = len(refs)
        return {
            "samples": n,
            "oracle_acc": float(hit.mean()),
            "acc_se": float(np.sqrt(hit.mean() * (1 - hit.mean()) / max(n, 1))),
            "twin_conf": float((scores.predicted == twins).mean()),
            "category_acc": float((np.array([IDENTITIES[p].category for p in scores.predicted]) == categories).mean()),
            "oracle_conf": float(scores.confidence.mean()),
            "guide_sim": float(scores.guide.mean()),
            "judge_sim": float(scores.judge.mean()),
            "fd": frechet_distance(scores.features, self.render_features) if n > 2 else float("nan"),
            "fd_seen": self.seen_distance(scores) if n > 2 else float("nan"),
        }

    def seen_distance(self, scores: Scores) -> float:
        """Fréchet distance to fresh renders of the identities the oracle reads in the samples."""
        renders = render_batch(scores.predicted, SEEN_SET_SEED + np.arange(len(scores.predicted)))
        return frechet_distance(scores.features, self.features(renders))
