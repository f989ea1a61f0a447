"""Identity Noise Search Sampler: spend a sampling budget better than best-of-N (zero-order or paths)."""

from __future__ import annotations

import inspect

import torch
from comfy_api.latest import io

from ..guidance.search import path_plan, paths, zero_order
from ..scorers import checks
from ..scorers.ranking import rank
from .sampling import KSampling, graph_inputs, sampler_inputs
from .score import table

METHODS = ["paths", "zero-order"]  # paths first: the better search on the proving ground


class IdentityNoiseSearch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideNoiseSearch",
            display_name="Identity Noise Search Sampler",
            category="idguide",
            description="Searches for the sample most faithful to the reference within a budget of full samples. "
                        "paths: random starts, then the best samples so far are re-noised part-way (img2img) and "
                        "sampled again. zero-order: rounds of noises around the best noise so far. Each sample "
                        "runs on KSampler's own path (every sampler, img2img and inpainting).",
            inputs=[
                *graph_inputs("batch size 1 (its noise mask and batch index are honoured)"),
                io.Combo.Input("method", options=METHODS, default="paths"),
                io.Int.Input("budget", default=16, min=1, max=1024,
                             tooltip="compute, in full samples (a paths branch costs 'strength' of one)"),
                io.Int.Input("keep", default=1, min=1, max=1024, tooltip="how many of the best to return"),
                io.Float.Input("threshold", default=0.0, min=0.0, max=100.0, step=0.1,
                               tooltip="stop after the round in which a sample scores this (0-100); 0 = never"),
                *sampler_inputs(),
                io.Int.Input("neighbours", default=8, min=1, max=64, optional=True,
                             tooltip="zero-order: samples per round"),
                io.Float.Input("mix", default=0.75, min=0.01, max=1.0, step=0.01, optional=True,
                               tooltip="zero-order: how far a neighbour's noise is from the best (1 = fresh noise)"),
                io.Float.Input("strength", default=0.5, min=0.05, max=1.0, step=0.05, optional=True,
                               tooltip="paths: how far back toward noise a branch re-noises (a fraction of denoise)"),
                io.Int.Input("parents", default=2, min=1, max=64, optional=True,
                             tooltip="paths: how many of the best samples so far branch each round"),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="scores", is_output_list=True),
                io.String.Output(display_name="table"),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, vae, reference, seed, method, budget, keep, threshold,
                steps, cfg, sampler_name, scheduler, denoise=1.0, neighbours=8, mix=0.75, strength=0.5,
                parents=2) -> io.NodeOutput:
        import comfy.utils

        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        checks.number("threshold", threshold, 0.0, 100.0)
        unused = dict(neighbours=neighbours, mix=mix) if method == "paths" else dict(strength=strength, parents=parents)
        defaults = inspect.signature(cls.execute).parameters
        for name, value in unused.items():
            if value != defaults[name].default:
                checks.no_effect(f"{name} {value:g} has no effect with method '{method}'", stacklevel=2)
        run = KSampling(model, positive, negative, latent_image, vae, reference, steps, cfg, sampler_name, scheduler,
                        denoise)
        total = budget if method == "zero-order" else sum(path_plan(budget, None, parents, strength))
        bar = comfy.utils.ProgressBar(total)
        images: list[torch.Tensor] = []
        latents: list[torch.Tensor] = []
        origins: list[str] = []

        def keep_all(new_latents: list[torch.Tensor], new_origins: list[str]) -> list[float]:
            decoded, scores = run.score(new_latents)
            images.extend(decoded)
            latents.extend(new_latents)
            origins.extend(new_origins)
            bar.update(len(new_latents))
            return scores

        def evaluate(noise: torch.Tensor, index: int) -> list[float]:
            seeds = range(seed + index, seed + index + noise.shape[0])
            return keep_all([run.sample(n[None], s) for n, s in zip(noise, seeds)],
                            [f"seed {s}" if index == 0 else f"near the best noise, seed {s}" for s in seeds])

        def draw(count: int, index: int) -> torch.Tensor:
            return torch.cat([run.noise(seed + index + i) for i in range(count)])

        def branch(chosen: list[int], index: int) -> list[float]:
            new = [run.sample(run.noise(seed + index + i), seed + index + i, latents[p], strength)
                   for i, p in enumerate(chosen)]
            return keep_all(new, [f"branch of {p}, seed {seed + index + i}" for i, p in enumerate(chosen)])

        stop = (lambda best: best >= threshold) if threshold else None
        if method == "zero-order":
            scores = zero_order(evaluate, draw, budget, neighbours, mix, stop)
        else:
            scores = paths(lambda count, index: evaluate(draw(count, index), index), branch, budget, None, parents,
                           strength, stop)
        kept = rank(scores, top_k=keep).kept
        lines = table(scores, kept).splitlines()
        lines[0] += "   origin"
        lines[1:] = [f"{line}   {origins[i]}" for line, i in zip(lines[1:], kept)]
        return io.NodeOutput(torch.stack(images)[kept], [scores[i] for i in kept],
                             "\n".join(lines) + f"\n({len(scores)} samples, {method}, budget {budget})")
