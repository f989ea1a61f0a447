"""Figures for a paper: per-category alignment bars and metric-vs-human scatter plots."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..drawing import pyplot
from .dreambench import HUMAN, Alignment

LABELS = {"object": "Object", "live_subject_animal": "Animal", "live_subject_human": "Human", "style": "Style",
          "all": "All"}


def category_bars(results: Mapping[str, Alignment]):
    """Grouped bars: Fisher-z mean correlation with humans per category, one bar per metric;
    Human-Human drawn as the ceiling line of each group."""
    plt = pyplot()
    categories = list(results)
    metrics = [m for m in next(iter(results.values())).rows if m != HUMAN]
    figure, axes = plt.subplots(figsize=(1.6 + 1.3 * len(categories) * max(1, len(metrics)) ** 0.5, 3.6), dpi=150)
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        values = [results[c].mean(metric) for c in categories]
        positions = np.arange(len(categories)) - 0.4 + width * (j + 0.5)
        bars = axes.bar(positions, values, width, label=metric)
        axes.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
    for i, category in enumerate(categories):
        ceiling = results[category].mean(HUMAN)
        axes.hlines(ceiling, i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=1,
                    label=HUMAN if i == 0 else None)
    axes.set_xticks(range(len(categories)), [LABELS.get(c, c) for c in categories])
    axes.set_ylabel("Pearson r with humans (Fisher-z mean)")
    axes.set_ylim(0, 1)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=7, frameon=False, ncol=2)
    figure.tight_layout()
    return figure


def scatter(metric: str, scores: Sequence[float], human: Sequence[float], r: float, category: str):
    """Metric score against the mean human rating (0-4) for every image, jittered vertically."""
    plt = pyplot()
    human = np.asarray(human, dtype=float)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(human))
    figure, axes = plt.subplots(figsize=(4.2, 3.4), dpi=150)
    axes.scatter(scores, human + jitter, s=4, alpha=0.35, linewidths=0)
    means = [(np.mean(np.asarray(scores)[human == h]), h) for h in np.unique(human)]
    axes.plot([m for m, _ in means], [h for _, h in means], "o-", color="black", markersize=3, linewidth=1,
              label="mean score per rating")
    axes.set_xlabel(f"{metric} score")
    axes.set_ylabel("mean human rating (0-4)")
    axes.set_title(f"{LABELS.get(category, category)}: {metric} (pooled r = {r:.3f})", fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return figure
