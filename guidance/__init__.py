"""Identity guidance and sample selection.

The pure-torch core is this folder (``step``: the guided step; ``loss``, ``augment``,
``decode``, ``resampling``; ``search``: the search loops; ``ranked``: the ranked result and the
best-of-N loop). ``diffusers/`` adapts it to diffusers pipelines (callbacks, schedulers,
decoders) and ``generate/`` drives pipelines to ranked samples; both import diffusers only
when used, so ``import idguide`` stays light.
"""

from .augment import Augment
from .decode import VaeDecoder
from .generate.best_of_n import best_of_n
from .generate.search import noise_search, path_search
from .loss import IdentityLoss
from .ranked import Ranked, Sample
from .step import GuidanceSettings, guided_denoised, guided_step, noise_fraction

__all__ = [
    "Augment",
    "GuidanceSettings",
    "IdentityGuidanceCallback",
    "IdentityLoss",
    "ParticleSteering",
    "Ranked",
    "Sample",
    "VaeDecoder",
    "best_of_n",
    "guided_denoised",
    "guided_step",
    "noise_fraction",
    "noise_search",
    "path_search",
    "steer_particles",
]

# The diffusers extra, imported on first use: name → (module, attribute).
LAZY = {"IdentityGuidanceCallback": (".diffusers.callback", "IdentityGuidanceCallback"),
        "ParticleSteering": (".diffusers.particles", "ParticleSteering"),
        "steer_particles": (".generate.particles", "steer_particles")}
RENAMED = {"BestOfN": "Ranked"}  # old name → new (0.2); the old one goes in the next release


def __getattr__(name):
    if name in LAZY:
        import importlib

        from ..scorers.optional import require

        require("diffusers", f"idguide.{name}")
        module, attribute = LAZY[name]
        return getattr(importlib.import_module(module, __name__), attribute)
    if name in RENAMED:
        import warnings

        warnings.warn(f"idguide.{name} is renamed idguide.{RENAMED[name]} (every method returns it); the old name "
                      "goes in the next release", DeprecationWarning, stacklevel=2)
        return globals()[RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
