"""Identity scorers behind one differentiable interface (pure torch + transformers)."""

from .base import Scorer
from .embedding import Embedding
from .errors import ImageInputError, WeightsError
from .images import load_image
from .registry import available_scorers, load_scorer, register_scorer
from .weights import add_search_path

__all__ = [
    "Embedding",
    "ImageInputError",
    "Scorer",
    "WeightsError",
    "add_search_path",
    "available_scorers",
    "load_image",
    "load_scorer",
    "register_scorer",
]
