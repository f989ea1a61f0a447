"""The identity loss: how far decoded images are from a reference identity."""

from __future__ import annotations

from typing import Literal

import torch

from ..scorers import Embedding, Scorer, checks
from ..scorers.base import EmbeddingOrImages

ReferenceMode = Literal["mean", "best"]


class IdentityLoss:
    """Scorer distance (``1 - similarity``) of images to one identity shown by one or more references.

    The references are embedded once, here. With several references, ``"mean"`` averages the
    distance over them (match the identity as a whole) and ``"best"`` takes the closest one
    (match any view). Differentiable in the images.
    """

    def __init__(self, scorer: Scorer, reference: EmbeddingOrImages, reference_mode: ReferenceMode = "mean"):
        checks.scorer(scorer)
        if reference_mode not in ("mean", "best"):
            raise ValueError(f"reference_mode must be 'mean' or 'best', got {reference_mode!r}")
        self.scorer = scorer
        self.reference: Embedding = scorer.as_embedding(reference, "reference").detach()
        self.reference_mode = reference_mode

    def similarity(self, embedding: Embedding) -> torch.Tensor:
        """Per-image similarity ``[B]`` to the identity (mean over references, or the best one)."""
        matrix = self.scorer._similarity_matrix(embedding, self.reference.to(embedding.device))  # [B, R]
        return matrix.mean(dim=1) if self.reference_mode == "mean" else matrix.max(dim=1).values

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image loss ``[B]`` (``1 - similarity``) for ``[B,3,H,W]`` RGB in [0, 1]."""
        return 1.0 - self.similarity(self.scorer.embed(images))
