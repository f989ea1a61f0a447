"""Deprecated path (0.2): see ``idguide.guidance.generate.best_of_n`` and ``idguide.guidance.ranked``."""

from .moved import forward

globals().update(forward("best_of_n", "generate.best_of_n"))
from .ranked import Ranked as BestOfN, Sample  # noqa: E402,F401
