"""Identity guidance (pure torch core; the diffusers adapter imports diffusers lazily)."""

from .augment import Augment
from .best_of_n import BestOfN, Sample, best_of_n
from .search import noise_search, path_search
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
    "path_search",
    "steer_particles",
]


def __getattr__(name):
    if name in ("IdentityGuidanceCallback", "steer_particles"):  # the diffusers extra
        from ..scorers.optional import require

        require("diffusers", f"idguide.{name}")
        if name == "IdentityGuidanceCallback":
            from .diffusers_callback import IdentityGuidanceCallback

            return IdentityGuidanceCallback
        from .particles import steer_particles

        return steer_particles
    raise AttributeError(name)
