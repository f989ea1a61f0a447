"""Run steering methods on the proving ground through IDGuide's public paths, counting compute.

A *task* is (reference identity, seed): generate with the task's prompt (``judging.task_prompt``:
the category; in the latent world also a scene other than the reference's) and try to get *that*
identity. Methods: unguided, best-of-N (``best_of_n``; budgets n = 1, 2, 4, … come from the first n
candidates of one run of the largest n, the same images ``best_of_n(n=...)`` would give), identity
guidance (``IdentityGuidanceCallback``, with the full decoder or the tiny one), particle steering,
noise search and search over paths. Every sample records the compute spent on it as integer
image-passes per component (``COUNTS``), so any cost profile can price it, and the seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)

from idguide.guidance import VaeDecoder, best_of_n
from idguide.guidance.diffusers.callback import IdentityGuidanceCallback
from idguide.guidance.generate.particles import steer_particles
from idguide.guidance.generate.search import noise_search, path_search
from idguide.scorers.base import Scorer
from .judging import reference_image, task_prompt, task_scenes
from .pipeline import SAMPLING_SCHEDULE, LatentWorldPipeline

SCHEDULERS: dict[str, Callable[[float], object]] = {  # (the range DDIM and DDPM clip x̂0 to) → scheduler
    "ddim": lambda clip: DDIMScheduler(**SAMPLING_SCHEDULE, clip_sample=True, clip_sample_range=clip),
    "euler": lambda clip: EulerDiscreteScheduler(**SAMPLING_SCHEDULE),
    "dpm++": lambda clip: DPMSolverMultistepScheduler(**SAMPLING_SCHEDULE, algorithm_type="dpmsolver++"),
    "unipc": lambda clip: UniPCMultistepScheduler(**SAMPLING_SCHEDULE),
    "ddpm": lambda clip: DDPMScheduler(**SAMPLING_SCHEDULE, clip_sample=True, clip_sample_range=clip),
    "euler-a": lambda clip: EulerAncestralDiscreteScheduler(**SAMPLING_SCHEDULE),
    "flow-euler": lambda clip: FlowMatchEulerDiscreteScheduler(),  # the generator seen as a flow model (FlowView)
}
# DDIM and DDPM clip x̂0: to the pixels' [-1, 1] in the pixel world; in the latent world to ±3 (3 std of the
# unit-variance latents). Unclipped, DDIM's first steps (ᾱ ≈ 0.002) blow up x̂0 and the latent model's DDIM
# samples lose their category (56 % against 97 % clipped; Euler, DPM-Solver++ need no clipping: 96-98 %).
CLIP_RANGE = {"pixel": 1.0, "latent": 3.0}
CANDIDATE_SEED = 1000  # candidate k of task seed s uses generator seed s * 1000 + k (k = 0: the unguided sample)
# Image-passes per component: denoiser evaluations (CFG counts 2); full decoder forward / forward+backward;
# the tiny decoder likewise; encoder (img2img); scorer forward / forward+backward.
COUNTS = ("unet", "dec", "dec_grad", "tiny_dec", "tiny_dec_grad", "enc", "scorer", "scorer_grad")
DECODERS = ("full", "tiny")  # what guidance and particles decode with in the latent world


@dataclass(frozen=True)
class Sampling:
    """Sampler settings shared by every method (so only the steering differs)."""

    steps: int = 25
    cfg: float = 2.0
    scheduler: str = "ddim"

    def kwargs(self, prompt) -> dict:
        return {"prompt": prompt, "num_inference_steps": self.steps, "guidance_scale": self.cfg}

    @property
    def nfe(self) -> int:
        """Denoiser evaluations per sample."""
        return self.steps * (1 if self.cfg == 1.0 else 2)


@dataclass
class Compute:
    """Image-passes per component (``COUNTS``) and seconds, per sample."""

    unet: int = 0
    dec: int = 0
    dec_grad: int = 0
    tiny_dec: int = 0
    tiny_dec_grad: int = 0
    enc: int = 0
    scorer: int = 0
    scorer_grad: int = 0
    seconds: float = 0.0

    def scaled(self, factor: float) -> "Compute":
        return Compute(*(round(getattr(self, k) * factor) for k in COUNTS), self.seconds * factor)

    @property
    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in COUNTS}

    @property
    def passes(self) -> int:
        """Image-passes of every component together (the toy's own, unpriced measure)."""
        return sum(self.counts.values())


@dataclass
class Trial:
    """One image a method generated on the proving ground, with what made it and its cost (the
    world knows its identity; idguide's ``Sample`` is a ranked result's entry)."""
    image: torch.Tensor  # [3,H,W] in [0, 1]
    reference: int
    seed: int
    method: str
    budget: str
    scheduler: str
    world: str = "pixel"
    compute: Compute = field(default_factory=Compute)

    @property
    def category(self) -> int:
        from .world import IDENTITIES

        return IDENTITIES[self.reference].category

    @property
    def scenes(self) -> dict[str, int]:
        """Prompted and reference scene encodings (``judging.task_scenes``)."""
        return task_scenes(self.world, self.reference, self.seed)


def world_of(pipe) -> str:
    return "latent" if isinstance(pipe, LatentWorldPipeline) else "pixel"


class Counter:
    """Counts image-passes through the denoiser, the decoders, the encoder and the scorer; a pass
    whose output requires grad is a forward+backward one (``*_grad``). Latent world: forward hooks
    on the autoencoders' modules. Pixel world: its decode/encode maps are counted as the decoder and
    encoder they stand in for, so a method's counts mean the same in both worlds."""

    def __init__(self, pipe, scorer: Scorer):
        self.counts = dict.fromkeys(COUNTS, 0)
        self.hooks = [pipe.unet.register_forward_hook(lambda m, args, out: self._add("unet", len(args[0])))]
        self.pipe, self.scorer = pipe, scorer
        if world_of(pipe) == "latent":
            modules = [(pipe.vae.decoder, "dec"), (pipe.vae.encoder, "enc")]
            if pipe.tiny_vae is not None:
                modules += [(pipe.tiny_vae.decoder, "tiny_dec"), (pipe.tiny_vae.encoder, "enc")]
            self.hooks += [m.register_forward_hook(self._module_hook(name)) for m, name in modules]
        else:
            pipe.decode, pipe.encode = self._wrapped(pipe.decode, "dec"), self._wrapped(pipe.encode, "enc")
        scorer.encode = self._wrapped(scorer.encode, "scorer")  # instance attributes over the methods, removed again

    def _add(self, name: str, count: int, grad: bool = False) -> None:
        self.counts[name + ("_grad" if grad and name != "enc" else "")] += count

    def _module_hook(self, name: str):
        def hook(module, args, output):
            self._add(name, len(args[0]), isinstance(output, torch.Tensor) and output.requires_grad)
        return hook

    def _wrapped(self, fn: Callable, name: str) -> Callable:
        def counted(x):
            out = fn(x)
            vector = getattr(out, "vector", out)
            self._add(name, x.shape[0], vector.requires_grad)
            return out
        return counted

    def compute(self, samples: int, seconds: float) -> Compute:
        """The counts so far, per sample."""
        return Compute(*(self.counts[k] // samples for k in COUNTS), seconds / samples)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        for owner, name in ((self.pipe, "decode"), (self.pipe, "encode"), (self.scorer, "encode")):
            owner.__dict__.pop(name, None)


def decoder_for(pipe, decoder: str = "full") -> Callable[[torch.Tensor], torch.Tensor]:
    """The differentiable decoder a method gets: the pixel world's map to [0, 1]; in the latent
    world IDGuide's ``VaeDecoder`` around the full autoencoder or the tiny one (at native size)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if world_of(pipe) == "pixel":
        return pipe.decode
    vae = pipe.vae if decoder == "full" else pipe.tiny_vae
    return VaeDecoder(vae, None, None, pipe.vae_scale_factor)


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def use_scheduler(pipe, name: str) -> None:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}")
    pipe.scheduler = SCHEDULERS[name](CLIP_RANGE[world_of(pipe)])


def prompts(pipe, reference: int, seeds: Sequence[int]) -> list[str]:
    return [task_prompt(world_of(pipe), reference, s) for s in seeds]


def reference_of(pipe, reference: int) -> torch.Tensor:
    return reference_image(reference, world_of(pipe))[None]


class counting:
    """``with counting(pipe, scorer) as c: ...`` — then ``c.compute(samples)``: counts and seconds per sample."""

    def __init__(self, pipe, scorer: Scorer):
        self.pipe, self.scorer = pipe, scorer

    def __enter__(self) -> "counting":
        self.counter, self.started = Counter(self.pipe, self.scorer), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started
        self.counter.remove()

    def compute(self, samples: int) -> Compute:
        return self.counter.compute(samples, self.seconds)


def unguided(pipe, scorer: Scorer, reference: int, seeds: Sequence[int], sampling: Sampling) -> list[Trial]:
    use_scheduler(pipe, sampling.scheduler)
    with counting(pipe, scorer) as c:
        images = pipe(generator=generators([s * CANDIDATE_SEED for s in seeds]), output_type="pt",
                      **sampling.kwargs(prompts(pipe, reference, seeds))).images
    budget = f"steps={sampling.steps} {sampling.scheduler}"
    return [Trial(img, reference, s, "unguided", budget, sampling.scheduler, world_of(pipe), c.compute(len(seeds)))
            for img, s in zip(images, seeds)]


def guided(pipe, scorer: Scorer, reference: int, seeds: Sequence[int], sampling: Sampling, scale: float,
           method: str | None = None, decoder: str = "full", **settings) -> list[Trial]:
    """Identity guidance (``IdentityGuidanceCallback``) toward the reference image, decoding with
    ``decoder`` ("full" or "tiny"); ``settings`` go to the callback (``end``, ``augment``, ``recurrence``, …).
    The method is named ``guidance`` (``guidance-tiny`` with the tiny decoder) unless ``method`` says."""
    use_scheduler(pipe, sampling.scheduler)
    with counting(pipe, scorer) as c:
        callback = IdentityGuidanceCallback(scorer, reference_of(pipe, reference), scale=scale,
                                            decoder=decoder_for(pipe, decoder), decode_size=None, **settings)
        images = pipe(generator=generators([s * CANDIDATE_SEED for s in seeds]), output_type="pt",
                      callback_on_step_end=callback, callback_on_step_end_tensor_inputs=callback.tensor_inputs,
                      **sampling.kwargs(prompts(pipe, reference, seeds))).images
    method = method or ("guidance" if decoder == "full" else "guidance-tiny")
    budget = f"scale={scale:g} {sampling.scheduler}"
    return [Trial(img, reference, s, method, budget, sampling.scheduler, world_of(pipe), c.compute(len(seeds)))
            for img, s in zip(images, seeds)]


def best_of(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling,
            budgets: Sequence[int]) -> list[Trial]:
    """Best-of-n for every n in ``budgets`` from one ``best_of_n`` run of the largest n."""
    use_scheduler(pipe, sampling.scheduler)
    largest = max(budgets)
    with counting(pipe, scorer) as c:
        result = best_of_n(pipe, scorer, reference_of(pipe, reference), n=largest, batch_size=largest, keep=largest,
                           seed=seed * CANDIDATE_SEED, progress=False, **sampling.kwargs(prompts(pipe, reference, [seed])[0]))
    return best_of_prefixes(pipe, result, "best-of-n", reference, seed, sampling, budgets, c.compute(largest))


def guided_best_of(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, budgets: Sequence[int],
                   scale: float, decoder: str = "full", **settings) -> list[Trial]:
    """Best-of-n over identity-guided samples (the guidance callback in ``best_of_n``'s pipeline
    arguments), for every n in ``budgets`` from one run of the largest: selection on top of steering."""
    use_scheduler(pipe, sampling.scheduler)
    largest = max(budgets)
    with counting(pipe, scorer) as c:
        callback = IdentityGuidanceCallback(scorer, reference_of(pipe, reference), scale=scale,
                                            decoder=decoder_for(pipe, decoder), decode_size=None, **settings)
        result = best_of_n(pipe, scorer, reference_of(pipe, reference), n=largest, batch_size=largest, keep=largest,
                           seed=seed * CANDIDATE_SEED, progress=False, callback_on_step_end=callback,
                           callback_on_step_end_tensor_inputs=callback.tensor_inputs,
                           **sampling.kwargs(prompts(pipe, reference, [seed])[0]))
    method = "guided-best-of-n" + ("" if decoder == "full" else f"-{decoder}")
    return best_of_prefixes(pipe, result, method, reference, seed, sampling, budgets, c.compute(largest))


def best_of_prefixes(pipe, result, method: str, reference: int, seed: int, sampling: Sampling, budgets: Sequence[int],
                     per_candidate: Compute) -> list[Trial]:
    """Budget n keeps the best of the first n samples of a sequential run — what a run with budget n gives."""
    by_index = sorted(result.samples, key=lambda s: s.index)
    return [Trial(max(by_index[:n], key=lambda s: s.score).image, reference, seed, method, f"n={n}",
                   sampling.scheduler, world_of(pipe), per_candidate.scaled(n)) for n in budgets]


def particles(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, k: int, decoder: str = "full",
              **options) -> Trial:
    """Particle steering (``steer_particles``) with k particles scored through ``decoder``; the best
    final particle is the sample (method ``particles``, or ``particles-tiny``)."""
    use_scheduler(pipe, sampling.scheduler)
    with counting(pipe, scorer) as c:
        result = steer_particles(pipe, scorer, reference_of(pipe, reference), particles=k, seed=seed * CANDIDATE_SEED,
                                 decoder=decoder_for(pipe, decoder), decode_size=None,
                                 **sampling.kwargs(prompts(pipe, reference, [seed])[0]), **options)
    method = "particles" if decoder == "full" else "particles-tiny"
    return Trial(result.samples[0].image, reference, seed, method, f"k={k}", sampling.scheduler, world_of(pipe),
                  c.compute(1))


def searched(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, budgets: Sequence[int],
             **options) -> list[Trial]:
    """Zero-order noise search (``noise_search``, its defaults unless ``options`` say otherwise);
    budget n keeps the best of its first n samples (exactly what a run with budget n gives)."""
    use_scheduler(pipe, sampling.scheduler)
    largest = max(budgets)
    with counting(pipe, scorer) as c:
        result = noise_search(pipe, scorer, reference_of(pipe, reference), pipe.latent_shape, budget=largest,
                              seed=seed * CANDIDATE_SEED, **sampling.kwargs(prompts(pipe, reference, [seed])[0]),
                              **options)
    return best_of_prefixes(pipe, result, "noise-search", reference, seed, sampling, budgets, c.compute(largest))


def path_searched(pipe, scorer: Scorer, reference: int, seed: int, sampling: Sampling, budget: int,
                  **options) -> Trial:
    """Search over paths (``path_search``, its defaults unless ``options`` say otherwise) with
    ``budget`` full samples' worth of denoising."""
    use_scheduler(pipe, sampling.scheduler)
    with counting(pipe, scorer) as c:
        result = path_search(pipe, scorer, reference_of(pipe, reference), budget=budget, seed=seed * CANDIDATE_SEED,
                             **sampling.kwargs(prompts(pipe, reference, [seed])[0]), **options)
    return Trial(result.samples[0].image, reference, seed, "path-search", f"n={budget}", sampling.scheduler,
                  world_of(pipe), c.compute(1))
