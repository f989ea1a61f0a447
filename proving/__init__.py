"""The proving ground: a small world with trained models where identity is known.

Procedural identities (``world``), a category-prompted pixel diffusion generator wrapped as a
diffusers pipeline (``pipeline``), a guide scorer that steers, a held-out judge and an oracle
classifier that judge (``models``, ``judging``), and the harness that runs steering methods
through IDGuide's public paths (``harness``; ``benchmarks/steering_bench.py`` runs it all).
The two scorers are registered as ``proving-guide`` and ``proving-judge`` through the
``idguide.scorers`` entry points, like any other package's scorers.
"""

from .models import Oracle, load_generator, load_guide, load_judge
from .world import CATEGORIES, IDENTITIES, NUM_CATEGORIES, NUM_IDENTITIES, Identity, identities_of, render, render_batch

__all__ = [
    "CATEGORIES",
    "IDENTITIES",
    "Identity",
    "IdentityWorldPipeline",
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


def __getattr__(name):
    if name == "IdentityWorldPipeline":  # diffusers only when the generator is asked for
        from ..scorers.optional import require

        require("diffusers", "the proving ground's generator")
        from .pipeline import IdentityWorldPipeline

        return IdentityWorldPipeline
    raise AttributeError(f"module 'idguide.proving' has no attribute {name!r}")
