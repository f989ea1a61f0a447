"""Identity guidance (pure torch core; the diffusers adapter imports diffusers lazily)."""

from .augment import Augment
from .best_of_n import BestOfN, Sample, best_of_n
from .search import noise_search
from .decode import VaeDecoder
from .loss import IdentityLoss
from .step import GuidanceSettings, guided_denoised, noise_fraction

__all__ = [
    "Augment",
    "BestOfN",
    "GuidanceSettings",
    "IdentityGuidanceCallback",
    "IdentityLoss",
    "Sample",
    "VaeDecoder",
    "best_of_n",
    "guided_denoised",
    "noise_fraction",
    "noise_search",
    "steer_particles",
]


def __getattr__(name):
    if name == "IdentityGuidanceCallback":
        from .diffusers_callback import IdentityGuidanceCallback

        return IdentityGuidanceCallback
    if name == "steer_particles":  # imports diffusers
        from .particles import steer_particles

        return steer_particles
    raise AttributeError(name)
