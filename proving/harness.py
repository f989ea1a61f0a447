"""Run steering methods on the proving ground through IDGuide's public paths, counting compute.

A *task* is (reference identity, seed): generate with the reference's category as the
prompt and try to get *that* identity. Methods here: unguided, best-of-N (``best_of_n``;
budgets n = 1, 2, 4, … come from the first n candidates of one run of the largest n, the
same images ``best_of_n(n=...)`` would give) and identity guidance
(``IdentityGuidanceCallback``). Every sample records the compute spent on it: denoiser
evaluations (NFE; classifier-free guidance counts two), scorer and decoder passes, seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)

from ..guidance import best_of_n
from ..guidance.diffusers_callback import IdentityGuidanceCallback
from ..guidance.particles import steer_particles
from ..guidance.search import noise_search, path_search
from ..scorers.base import Scorer
from .judging import reference_image
from .pipeline import SAMPLING_SCHEDULE, IdentityWorldPipeline
from .world import IDENTITIES, SIZE

SCHEDULERS: dict[str, Callable[[], object]] = {
    "ddim": lambda: DDIMScheduler(**SAMPLING_SCHEDULE, clip_sample=True),
    "euler": lambda: EulerDiscreteScheduler(**SAMPLING_SCHEDULE),
    "dpm++": lambda: DPMSolverMultistepScheduler(**SAMPLING_SCHEDULE, algorithm_type="dpmsolver++"),
    "unipc": lambda: UniPCMultistepScheduler(**SAMPLING_SCHEDULE),
    "ddpm": lambda: DDPMScheduler(**SAMPLING_SCHEDULE, clip_sample=True),
    "euler-a": lambda: EulerAncestralDiscreteScheduler(**SAMPLING_SCHEDULE),
    "flow-euler": lambda: FlowMatchEulerDiscreteScheduler(),  # the generator seen as a flow model (PixelUNet)
}
CANDIDATE_SEED = 1000  # candidate k of task seed s uses generator seed s * 1000 + k (k = 0: the unguided sample)


@dataclass(frozen=True)
class Sampling:
    """Sampler settings shared by every method (so only the steering differs)."""

    steps: int = 25
    cfg: float = 2.0
    scheduler: str = "ddim"

    def kwargs(self, category: int) -> dict:
        return {"prompt": category, "num_inference_steps": self.steps, "guidance_scale": self.cfg}

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample."""
        return self.steps * (1 if self.cfg == 1.0 else 2)


@dataclass
class Compute:
    nfe: int = 0
    scorer_forward: int = 0
    scorer_backward: int = 0
    decoder_forward: int = 0
    seconds: float = 0.0

    def scaled(self, factor: float) -> "Compute":
        return Compute(round(self.nfe * factor), round(self.scorer_forward * factor),
                       round(self.scorer_backward * factor), round(self.decoder_forward * factor),
                       self.seconds * factor)


@dataclass
class Sample:
    image: torch.Tensor  # [3,H,W] in [0, 1]
    reference: int
    seed: int
    method: str
    budget: str
    scheduler: str
    compute: Compute = field(default_factory=Compute)

    @property
    def category(self) -> int:
        return IDENTITIES[self.reference].category


class Counter:
    """Counts images through the denoiser, the scorer (forward; backward when grad is on) and the decoder."""

    def __init__(self, pipe: IdentityWorldPipeline, scorer: Scorer):
        self.nfe = self.scorer_forward = self.scorer_backward = self.decoder_forward = 0
        self.hook = pipe.unet.register_forward_hook(self._denoiser)
        self.scorer = scorer
        encode = scorer.encode

        def counted_encode(pixels):
            embedding = encode(pixels)
            self.scorer_forward += pixels.shape[0]
            self.scorer_backward += pixels.shape[0] if embedding.vector.requires_grad else 0
            return embedding

        scorer.encode = counted_encode  # an instance attribute over the method, removed again

    def _denoiser(self, module, args, output):
        self.nfe += args[0].shape[0]

    def decoder(self, decode: Callable) -> Callable:
        def counted(latents):
            self.decoder_forward += latents.shape[0]
            return decode(latents)
        return counted

    def compute(self, samples: int, seconds: float) -> Compute:
        """The counts so far, per sample."""
        return Compute(self.nfe // samples, self.scorer_forward // samples, self.scorer_backward // samples,
                       self.decoder_forward // samples, seconds / samples)

    def remove(self) -> None:
        self.hook.remove()
        self.scorer.__dict__.pop("encode", None)


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def use_scheduler(pipe: IdentityWorldPipeline, name: str) -> None:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}")
    pipe.scheduler = SCHEDULERS[name]()


def unguided(pipe, scorer: Scorer, reference: int, seeds: Sequence[int], sampling: Sampling) -> list[Sample]:
    use_scheduler(pipe, sampling.scheduler)
    counter = Counter(pipe, scorer)
    try:
        started = time.perf_counter()
        images = pipe(num_images_per_prompt=len(seeds), generator=generators([s * CANDIDATE_SEED for s in seeds]),
                      output_type="pt", **sampling.kwargs(IDENTITIES[reference].category)).images
        compute = counter.compute(len(seeds), time.perf_counter() - started)
    finally:
        counter.remove()
    budget = f"steps={sampling.steps} {sampling.scheduler}"
    return [Sample(img, reference, s, "unguided", budget, sampling.scheduler, compute) for img, s in zip(images, seeds)]


def guided(pipe, scorer: Scorer, reference: int, seeds: Sequence[int], sampling: Sampling, scale: float,
           method: str = "guidance", **settings) -> list[Sample]:
    """Identity guidance (``IdentityGuidanceCallback``) toward the reference image; ``settings``
    go to the callback (``start``, ``end``, ``every``, ``inner_steps``, ``clip``, ``augment``, ``schedule``)."""
    use_scheduler(pipe, sampling.scheduler)
    counter = Counter(pipe, scorer)
    try:
        callback = IdentityGuidanceCallback(scorer, reference_image(reference)[None], scale=scale,
                                            decoder=counter.decoder(pipe.decode), decode_size=None, **settings)
        started = time.perf_counter()
        images = pipe(num_images_per_prompt=len(seeds), generator=generators([s * CANDIDATE_SEED for s in seeds]),
                      output_type="pt", callback_on_step_end=callback,
                      callback_on_step_end_tensor_inputs=callback.tensor_inputs,
                      **sampling.kwargs(IDENTITIES[reference].category)).images
        compute = counter.compute(len(seeds), time.perf_counter() - started)
    finally:
        counter.remove()
    budget = f"scale={scale:g} {sampling.scheduler}"
    return [Sample(img, reference, s, method, budget, sampling.scheduler, compute) for img, s in zip(images, seeds)]


def best_of(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling,
            budgets: Sequence[int]) -> list[Sample]:
    """Best-of-n for every n in ``budgets`` from one ``best_of_n`` run of the largest n."""
    use_scheduler(pipe, sampling.scheduler)
    largest = max(budgets)
    counter = Counter(pipe, scorer)
    try:
        started = time.perf_counter()
        result = best_of_n(pipe, scorer, reference_image(reference)[None], n=largest, batch_size=largest,
                           keep=largest, seed=seed * CANDIDATE_SEED, progress=False,
                           **sampling.kwargs(IDENTITIES[reference].category))
        per_candidate = counter.compute(largest, time.perf_counter() - started)
    finally:
        counter.remove()
    return best_of_prefixes(result, "best-of-n", reference, seed, sampling, budgets, per_candidate)


def best_of_prefixes(result, method: str, reference: int, seed: int, sampling: Sampling, budgets: Sequence[int],
                     per_candidate: Compute) -> list[Sample]:
    """Budget n keeps the best of the first n samples of a sequential run — what a run with budget n gives."""
    by_index = sorted(result.samples, key=lambda s: s.index)
    return [Sample(max(by_index[:n], key=lambda s: s.score).image, reference, seed, method, f"n={n}",
                   sampling.scheduler, per_candidate.scaled(n)) for n in budgets]


def particles(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, k: int, **options) -> Sample:
    """Particle steering (``steer_particles``) with k particles; the best final particle is the sample."""
    use_scheduler(pipe, sampling.scheduler)
    counter = Counter(pipe, scorer)
    try:
        started = time.perf_counter()
        result = steer_particles(pipe, scorer, reference_image(reference)[None], particles=k,
                                 seed=seed * CANDIDATE_SEED, decoder=counter.decoder(pipe.decode), decode_size=None,
                                 **sampling.kwargs(IDENTITIES[reference].category), **options)
        compute = counter.compute(1, time.perf_counter() - started)
    finally:
        counter.remove()
    return Sample(result.samples[0].image, reference, seed, "particles", f"k={k}", sampling.scheduler, compute)


def searched(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, budgets: Sequence[int],
             **options) -> list[Sample]:
    """Zero-order noise search (``noise_search``, its defaults unless ``options`` say otherwise);
    budget n keeps the best of its first n samples (exactly what a run with budget n gives)."""
    use_scheduler(pipe, sampling.scheduler)
    largest = max(budgets)
    counter = Counter(pipe, scorer)
    try:
        started = time.perf_counter()
        result = noise_search(pipe, scorer, reference_image(reference)[None], (3, SIZE, SIZE), budget=largest,
                              seed=seed * CANDIDATE_SEED, **sampling.kwargs(IDENTITIES[reference].category),
                              **options)
        per_candidate = counter.compute(largest, time.perf_counter() - started)
    finally:
        counter.remove()
    return best_of_prefixes(result, "noise-search", reference, seed, sampling, budgets, per_candidate)


def path_searched(pipe: IdentityWorldPipeline, scorer: Scorer, reference: int, seed: int, sampling: Sampling,
                  budget: int, **options) -> Sample:
    """Search over paths (``path_search``, its defaults unless ``options`` say otherwise) with
    ``budget`` full samples' worth of denoising."""
    use_scheduler(pipe, sampling.scheduler)
    counter = Counter(pipe, scorer)
    try:
        started = time.perf_counter()
        result = path_search(pipe, scorer, reference_image(reference)[None], budget=budget,
                             seed=seed * CANDIDATE_SEED, **sampling.kwargs(IDENTITIES[reference].category),
                             **options)
        compute = counter.compute(1, time.perf_counter() - started)
    finally:
        counter.remove()
    return Sample(result.samples[0].image, reference, seed, "path-search", f"n={budget}", sampling.scheduler, compute)
