"""The one preprocessing path of every scorer, in differentiable torch ops.

Each official pipeline is PIL resize (bicubic) → optional centre crop → ToTensor → normalise.
``Preprocess`` reproduces it on float tensors: bicubic with antialiasing is PIL's bicubic
filter (support widened when shrinking), and the result is clamped to [0, 1] as PIL's 8-bit
output is. What remains is the 8-bit rounding PIL does, which a float path cannot (and
should not) copy; ``tests/test_preprocess.py`` measures the difference on real photographs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocess:
    """Resize → (crop) → normalise.

    ``resize``: ``(H, W)`` for a plain resize to that size, or an int for "shortest edge to
    this length, keep aspect ratio" (the HF ``shortest_edge`` rule). ``crop``: centre crop
    side length, or ``None``.
    """

    resize: int | tuple[int, int]
    crop: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop, self.crop
        return self.resized_size(height, width)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.resize, tuple):
            return self.resize
        # HF's get_resize_output_image_size(default_to_square=False): the long side is truncated.
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(self.resize * long / short)
        return (self.resize, new_long) if height <= width else (new_long, self.resize)

    def view_box(self, height: int, width: int) -> tuple[float, float, float, float]:
        """``(top, left, bottom, right)`` of the region the model sees, in input pixels
        (the whole image unless a centre crop cuts it)."""
        if self.crop is None:
            return 0.0, 0.0, float(height), float(width)
        rh, rw = self.resized_size(height, width)
        top, left = (rh - self.crop) // 2, (rw - self.crop) // 2
        sy, sx = height / rh, width / rw
        return top * sy, left * sx, (top + self.crop) * sy, (left + self.crop) * sx

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` RGB in [0, 1] → normalised model input."""
        size = self.resized_size(images.shape[-2], images.shape[-1])
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)
            images = images.clamp(0.0, 1.0)
        if self.crop is not None:
            images = center_crop(images, self.crop)
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        return (images - mean) / std


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop as HF image processors do (offsets rounded down; pads with 0 if too small)."""
    height, width = images.shape[-2:]
    if height < size or width < size:
        pad_h, pad_w = max(size - height, 0), max(size - width, 0)
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]
