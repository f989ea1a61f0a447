"""Identity Particle Sampler: particle steering (Feynman–Kac) as a SAMPLER for SamplerCustomAdvanced.

The latent batch is the set of particles. The chosen sampler runs in segments between resampling
steps; at each boundary the particles' clean estimates are decoded, scored against the reference
and resampled, each copy after the first with ``renew`` of its noise fresh (``guidance.resampling``,
the rules the diffusers callback uses). Gradient-free: any
model and precision. A multistep sampler restarts its history at each boundary (its first step
after one is first-order); ancestral and SDE samplers get a fresh noise seed per segment.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..guidance.resampling import POTENTIALS, check_steering, renew_copies, resamples_at, select
from .common import ReferenceSocket, is_flow_sampling, signal_at
from .decoders import DECODER_TOOLTIP, DECODERS, decoder_for, model_space


def boundaries(num_steps: int, every: int, start: float, end: float) -> list[int]:
    """Step indices that end a segment: each resampling step, then the last step."""
    return [i for i in range(1, num_steps) if resamples_at(i, num_steps, every, start, end)] + [num_steps]


class SegmentedSteering:
    """The sampler function: wraps a KSAMPLER's own function, segment by segment (the diffusers
    counterpart is ``guidance.diffusers.particles.ParticleSteering``; both select with ``guidance.resampling``)."""

    def __init__(self, base, reference, decoder, every: int, start: float, end: float, temperature: float,
                 potential: str, seed: int, renew: float):
        self.base, self.reference = base, reference
        self.decoder = decoder  # the model's latent format → a decoder (the sampler meets the model only when it runs)
        self.every, self.start, self.end, self.temperature, self.potential = every, start, end, temperature, potential
        self.seed, self.renew = seed, renew
        self.resamplings = 0

    def __call__(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        import comfy.model_management as mm

        extra_args = dict(extra_args or {})
        num_steps = len(sigmas) - 1
        generator = torch.Generator().manual_seed(self.seed)
        base_model = model.inner_model.inner_model  # KSamplerX0Inpaint → guider → BaseModel
        flow = is_flow_sampling(base_model.model_sampling)
        decode = model_space(self.decoder(base_model.latent_format), base_model)  # once per run
        previous, first = None, 0
        self.resamplings = 0
        for last in boundaries(num_steps, self.every, self.start, self.end):
            mm.throw_exception_if_processing_interrupted()
            seen = {}

            def segment_callback(info, offset=first):
                seen["denoised"] = info["denoised"]
                if callback is not None:
                    callback({**info, "i": info["i"] + offset})

            args = dict(extra_args, seed=extra_args["seed"] + first) if extra_args.get("seed") is not None else extra_args
            x = self.base.sampler_function(model, x, sigmas[first : last + 1], extra_args=args,
                                           callback=segment_callback, disable=disable, **self.base.extra_options)
            if last < num_steps:
                scores = self.scores(decode, seen["denoised"])
                index = select(scores, previous, self.temperature, self.potential, generator)
                previous = scores[index]
                sigma = float(sigmas[last])
                where = index.to(x.device)
                x = renew_copies(x[where], seen["denoised"][where], index, signal_at(sigma, flow), sigma, self.renew,
                                 generator)
                self.resamplings += 1
            first = last
        return x

    @torch.no_grad()
    def scores(self, decode, denoised: torch.Tensor) -> torch.Tensor:
        images = decode(denoised)
        self.reference.handle.load()
        return 1.0 - self.reference(images.float()).float().cpu()


class IdentityParticleSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideParticleSampler",
            display_name="Identity Particle Sampler",
            category="idguide",
            description="Particle steering toward the reference identity: the latent batch is sampled as particles "
                        "that are scored and resampled every few steps (promising ones copied, poor ones dropped). "
                        "Gradient-free. Use with SamplerCustomAdvanced; rank the results with Identity Rank.",
            inputs=[
                io.Sampler.Input("sampler", tooltip="the sampler to steer (KSamplerSelect)"),
                io.Vae.Input("vae"),
                ReferenceSocket.Input("reference"),
                io.Int.Input("every", default=4, min=1, max=1000, tooltip="resample every k-th step"),
                io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="first resampling, as a fraction of the steps"),
                io.Float.Input("end", default=0.8, min=0.0, max=1.0, step=0.01,
                               tooltip="no resampling from this fraction of the steps on"),
                io.Float.Input("temperature", default=20.0, min=0.0, max=10000.0, step=0.5,
                               tooltip="how strongly scores pick particles (0 = no selection)"),
                io.Combo.Input("potential", options=list(POTENTIALS), default="difference",
                               tooltip="difference: the score's gain since the last resampling; value: the score"),
                io.Int.Input("decode_size", default=512, min=64, max=4096, step=64,
                             tooltip="decode at most this many pixels (longer side) to score"),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="the resampling draws"),
                io.Float.Input("renew", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,  # last: old graphs load
                               tooltip="share of a copied particle's noise drawn fresh after a resampling, so copies "
                                       "part ways on deterministic samplers too (0 = exact copies)"),
                io.Combo.Input("decoder", options=list(DECODERS), default="auto", optional=True,
                               tooltip=DECODER_TOOLTIP),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler, vae, reference, every, start, end, temperature, potential, decode_size,
                seed, renew=1.0, decoder="auto") -> io.NodeOutput:
        import comfy.samplers

        check_steering(every, start, end, temperature, potential, renew)
        if not isinstance(sampler, comfy.samplers.KSAMPLER):
            raise TypeError(f"particle steering wraps a k-diffusion sampler (KSamplerSelect), got {type(sampler).__name__}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        steering = SegmentedSteering(sampler, reference, lambda latent_format: decoder_for(
            vae, decode_size, decoder, latent_format), every, start, end, temperature, potential, seed, renew)
        return io.NodeOutput(comfy.samplers.KSAMPLER(steering, inpaint_options=sampler.inpaint_options))
