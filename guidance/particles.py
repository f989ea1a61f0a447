"""Deprecated path (0.2): see ``idguide.guidance.diffusers.particles``."""

from .moved import forward

globals().update(forward("particles", "diffusers.particles"))
from .generate.particles import steer_particles  # noqa: E402,F401
