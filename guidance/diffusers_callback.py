"""Deprecated path (0.2): see ``idguide.guidance.diffusers.callback``."""

from .moved import forward

globals().update(forward("diffusers_callback", "diffusers.callback"))
