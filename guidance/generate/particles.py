"""Particle steering over a diffusers pipeline: k particles sampled together, resampled by score."""

from __future__ import annotations

import inspect

import torch

from ...scorers import Scorer, checks
from ...scorers.base import EmbeddingOrImages
from ..diffusers.particles import ParticleSteering
from ..ranked import Ranked, scores_of
from . import images_of


def steer_particles(pipe, scorer: Scorer, reference: EmbeddingOrImages, particles: int = 8, seed: int = 0,
                    keep: int = 1, **options) -> Ranked:
    """Sample ``particles`` together (generator seeds ``seed .. seed+k-1``) with particle steering and
    return them ranked by their final score. ``options`` go to ``ParticleSteering`` when it takes
    them (``every``, ``temperature``, ``decoder``, …) and to the pipeline otherwise."""
    checks.pipeline(pipe)
    checks.scorer(scorer)
    checks.integer("particles", particles)
    checks.integer("keep", keep)
    names = set(inspect.signature(ParticleSteering).parameters)
    steering = {k: options.pop(k) for k in list(options) if k in names}
    callback = ParticleSteering(scorer, reference, seed=seed, **steering)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(particles)]
    images = images_of(pipe(num_images_per_prompt=particles, generator=generators, output_type="pt",
                            callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"], **options))
    scores = scores_of(scorer, callback.loss.reference, images)
    return Ranked.of(images.cpu(), scores, [seed] * particles, keep)
