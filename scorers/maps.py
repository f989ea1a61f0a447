"""Patch-level similarity maps: *where* an image keeps or loses the reference's identity.

Each patch of an image is compared with every patch of the reference(s) and keeps its best
match (cosine of unit patch tokens, the scorer's own patch features: ID-Sim's patch head,
the ViT tokens for the others). A region whose content has no counterpart in the reference
scores low. This explains a score; it is not the metric itself (which compares global
embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Scorer
from .images import ImageBatch


def reference_patches(scorer: Scorer, reference: ImageBatch) -> torch.Tensor:
    """Every patch token of the reference image(s), ``[M, D]``: computed once, compared many times."""
    tokens, _ = scorer.patch_tokens(reference)
    return tokens.reshape(-1, tokens.shape[-1])


def similarity_map(scorer: Scorer, reference: torch.Tensor, images: ImageBatch) -> torch.Tensor:
    """``[B, rows, cols]`` best-match cosine of each image patch to any of the ``reference_patches``."""
    tokens, (rows, cols) = scorer.patch_tokens(images)
    best = (tokens @ reference.to(tokens.device).T).amax(dim=-1)
    return best.reshape(-1, rows, cols)


def map_to_image(scorer: Scorer, maps: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``[B, rows, cols]`` → ``[B, height, width]`` in input pixels, and the mask of pixels
    the model saw (a centre crop leaves the borders unseen)."""
    top, left, bottom, right = scorer.preprocess.view_box(height, width)
    y0, x0 = int(round(top)), int(round(left))
    y1, x1 = max(int(round(bottom)), y0 + 1), max(int(round(right)), x0 + 1)
    y1, x1 = min(y1, height), min(x1, width)
    inside = F.interpolate(maps[:, None].float(), size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[:, 0]
    full = maps.new_zeros((maps.shape[0], height, width), dtype=torch.float32)
    seen = torch.zeros((height, width), dtype=torch.bool, device=maps.device)
    full[:, y0:y1, x0:x1] = inside
    seen[y0:y1, x0:x1] = True
    return full, seen

