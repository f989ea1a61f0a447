"""IDGuide's proving ground: a small world with trained models where identity is known.

Procedural identities in scenes (``world``); two generators wrapped as diffusers pipelines —
category-prompted pixel diffusion (``pipeline``) and a latent model prompted with the category
and the scene, with a KL autoencoder and a tiny distilled decoder (``latent``); a guide scorer
that steers, a held-out judge and two oracles (identity, scene) that judge (``models``,
``judging``); and the harness that runs steering methods through IDGuide's public paths,
counting compute per component (``harness``; ``benchmarks/steering_bench.py`` runs it all).
The two scorers reach IDGuide as ``proving-guide`` and ``proving-judge`` through the
``idguide.scorers`` entry points, like any other package's scorers.
"""

from .models import Oracle, load_generator, load_guide, load_judge
from .world import CATEGORIES, IDENTITIES, NUM_CATEGORIES, NUM_IDENTITIES, Identity, identities_of, render, render_batch

__all__ = [
    "CATEGORIES",
    "IDENTITIES",
    "Identity",
    "NUM_CATEGORIES",
    "NUM_IDENTITIES",
    "Oracle",
    "identities_of",
    "load_generator",
    "load_guide",
    "load_judge",
    "render",
    "render_batch",
]
