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
    register_scorer,
)

from .guidance import (
    Augment,
    GuidanceSettings,
    IdentityLoss,
    Ranked,
    Sample,
    best_of_n,
    guided_denoised,
    guided_step,
    noise_search,
    path_search,
)

__version__ = "0.2.0"


async def comfy_entrypoint():
    """ComfyUI's V3 entry point (only called inside ComfyUI; the library never imports it)."""
    from .nodes import IDGuideExtension

    return IDGuideExtension()


def __getattr__(name):
    # diffusers is imported only when a diffusers adapter is asked for (keeps `import idguide` light);
    # renamed names answer with a DeprecationWarning.
    from . import guidance

    if name in guidance.LAZY or name in guidance.RENAMED:
        return getattr(guidance, name)
    raise AttributeError(f"module 'idguide' has no attribute {name!r}")

__all__ = [
    "Augment",
    "Embedding",
    "GuidanceSettings",
    "IdentityGuidanceCallback",
    "IdentityLoss",
    "ImageInputError",
    "ParticleSteering",
    "Ranked",
    "Sample",
    "Scorer",
    "WeightsError",
    "__version__",
    "add_search_path",
    "available_scorers",
    "best_of_n",
    "guided_denoised",
    "guided_step",
    "noise_search",
    "path_search",
    "load_image",
    "load_scorer",
    "register_scorer",
    "steer_particles",
]
