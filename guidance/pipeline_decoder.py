"""Deprecated path (0.2): see ``idguide.guidance.diffusers.decoder``."""

from .moved import forward

globals().update(forward("pipeline_decoder", "diffusers.decoder"))
