"""IDGuide: identity metrics (ID-Sim, NearID, CLIP-I, DINO-I, SigLIP2) inside the generation loop.

This folder is both the pip package ``idguide`` and a ComfyUI custom-node folder. The library
never imports ComfyUI; only ``nodes/`` does.
"""

from .scorers import (
    Embedding,
    ImageInputError,
    Scorer,
    WeightsError,
    add_search_path,
    available_scorers,
    load_image,
    load_scorer,
)

__version__ = "0.1.0"

__all__ = [
    "Embedding",
    "ImageInputError",
    "Scorer",
    "WeightsError",
    "__version__",
    "add_search_path",
    "available_scorers",
    "load_image",
    "load_scorer",
]
