"""Drawing on images and plotting to images: score labels, heat-map overlays, matrices.

Everything returns ``[B,3,H,W]`` / ``[3,H,W]`` float tensors in [0, 1], so the same figures serve
the CLI (saved as PNG) and ComfyUI (IMAGE outputs). matplotlib runs headless (Agg).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def colormap(values: torch.Tensor, name: str = "turbo") -> torch.Tensor:
    """Values in [0, 1] ``[...]`` → RGB ``[..., 3]`` through a matplotlib colormap."""
    import matplotlib

    table = torch.tensor(matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3], dtype=torch.float32)
    index = (values.clamp(0, 1) * 255).round().long().cpu()
    return table[index].to(values.device)


def heatmap_overlay(
    images: torch.Tensor, maps: torch.Tensor, seen: torch.Tensor | None = None, low: float = 0.0,
    high: float = 1.0, alpha: float = 0.5,
) -> torch.Tensor:
    """Blend ``[B,H,W]`` maps (``low``→blue, ``high``→red) over ``[B,3,H,W]`` images.

    Pixels outside ``seen`` (what the model never saw) are shown dimmed, without colour, so a
    missing value is never mistaken for a low one.
    """
    if maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape)} do not match images {tuple(images.shape)}")
    if high <= low:
        raise ValueError(f"high ({high}) must be above low ({low})")
    colours = colormap((maps.float() - low) / (high - low)).movedim(-1, 1).to(images)
    blended = (1 - alpha) * images + alpha * colours
    if seen is not None:
        blended = torch.where(seen.to(images.device)[None, None], blended, 0.35 * images)
    return blended.clamp(0, 1)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def draw_labels(images: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Write one label in the top-left corner of each ``[B,3,H,W]`` image, on a dark band."""
    if len(labels) != images.shape[0]:
        raise ValueError(f"{len(labels)} labels for {images.shape[0]} images")
    out = []
    for image, label in zip(images, labels):
        pil = Image.fromarray((image.movedim(0, -1).float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        font = _font(max(10, min(pil.size) // 14))
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = max(2, (bottom - top) // 4)
        draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
        draw.text((pad - left, pad - top), label, fill=(255, 255, 255), font=font)
        out.append(torch.from_numpy(np.asarray(pil).copy()).movedim(-1, 0).float() / 255)
    return torch.stack(out).to(images.device)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (unless the caller chose another)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_to_tensor(figure) -> torch.Tensor:
    """A matplotlib figure → ``[3,H,W]`` in [0, 1] (and closes it)."""
    plt = pyplot()
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    plt.close(figure)
    return torch.from_numpy(rgba[..., :3].copy()).movedim(-1, 0).float() / 255


def matrix_figure(matrix: torch.Tensor, rows: Sequence[str], cols: Sequence[str], title: str = "", vmin=None,
                  vmax=None):
    """A labelled heat map of a similarity matrix, values written in the cells when they fit."""
    plt = pyplot()
    values = matrix.detach().float().cpu().numpy()
    n_rows, n_cols = values.shape
    figure, axes = plt.subplots(figsize=(min(2 + 0.55 * n_cols, 16), min(1.5 + 0.45 * n_rows, 14)), dpi=100)
    shown = axes.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax)
    axes.set_xticks(range(n_cols), [str(c) for c in cols], rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(n_rows), [str(r) for r in rows], fontsize=8)
    if n_rows * n_cols <= 400:
        middle = (np.nanmin(values) + np.nanmax(values)) / 2
        for i in range(n_rows):
            for j in range(n_cols):
                axes.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="black" if values[i, j] > middle else "white")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
    if title:
        axes.set_title(title)
    figure.tight_layout()
    return figure
