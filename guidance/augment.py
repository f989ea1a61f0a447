"""Differentiable augmentations of the decoded image before scoring ("cutouts").

A gradient through one view of one scorer finds pixel patterns that raise that score
without changing the object (adversarial guidance). Averaging the loss over random resized
crops, flips and small colour changes of the image — what CLIP-guided diffusion does with
cutouts — keeps the directions that survive a change of view, which are the ones that change
what the image shows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..scorers import checks


@dataclass(frozen=True)
class Augment:
    """``draws`` random views per image: a crop of ``crop`` (min, max) of the side, a horizontal
    flip with probability 1/2, brightness and contrast within ``±jitter``. ``draws`` 0 = off."""

    draws: int = 4
    crop: tuple[float, float] = (0.75, 1.0)
    jitter: float = 0.05

    def __post_init__(self):
        checks.integer("augment draws", self.draws, 0)
        low, high = self.crop
        checks.number("augment crop min", low, 0.1, 1.0)
        checks.number("augment crop max", high, low, 1.0)
        checks.number("augment jitter", self.jitter, 0.0, 1.0, high_open=True)
        default = {f.name: f.default for f in fields(self)}
        if self.draws == 0 and (tuple(self.crop), self.jitter) != (default["crop"], default["jitter"]):
            checks.no_effect(f"Augment(draws=0) makes no views: crop {tuple(self.crop)} and jitter {self.jitter:g} "
                             "have no effect", stacklevel=4)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B,3,H,W]`` in [0, 1] → ``[draws·B,3,H,W]`` (draw-major), differentiable in ``images``."""
        b = images.shape[0]
        n = self.draws * b
        rand = lambda *shape: torch.rand(*shape, generator=generator).to(images.device)  # noqa: E731
        side = self.crop[0] + (self.crop[1] - self.crop[0]) * rand(n)
        shift = (1 - side)[:, None] * (2 * rand(n, 2) - 1)
        flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=images.device)
        theta[:, 0, 0] = side * flip
        theta[:, 1, 1] = side
        theta[:, :, 2] = shift
        tiled = images.repeat(self.draws, 1, 1, 1)
        grid = F.affine_grid(theta.to(images.dtype), list(tiled.shape), align_corners=False)
        views = F.grid_sample(tiled, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        brightness = 1 + self.jitter * (2 * rand(n, 1, 1, 1) - 1)
        contrast = 1 + self.jitter * (2 * rand(n, 1, 1, 1) - 1)
        mean = views.mean(dim=(1, 2, 3), keepdim=True)
        return ((views - mean) * contrast + mean * brightness).clamp(0, 1)
