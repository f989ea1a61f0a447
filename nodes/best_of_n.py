"""Identity Best-of-N Sampler: sample N, decode, score each once, keep the K most faithful (the library's
best-of-N loop, ``guidance.ranked.best_of_batches``, over KSampler's own sampling)."""

from __future__ import annotations

from comfy_api.latest import io

from ..guidance.ranked import best_of_batches
from ..scorers import checks
from .sampling import KSampling, graph_inputs, sampler_inputs
from .score import table


class IdentityBestOfN(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideBestOfN",
            display_name="Identity Best-of-N Sampler",
            category="idguide",
            description="Samples N images (seed, seed+1, ...; each is what a KSampler with its seed gives, for every "
                        "sampler, inpainting and img2img included), "
                        "scores each once against the reference and returns the K most faithful, best first.",
            inputs=[
                *graph_inputs("batch size 1: N samples are drawn from it (its noise mask and batch index are "
                              "honoured, as in KSampler)"),
                io.Int.Input("n", default=8, min=1, max=1024),
                io.Int.Input("batch_size", default=2, min=1, max=64),
                io.Int.Input("keep", default=2, min=1, max=1024),
                io.Float.Input("threshold", default=0.0, min=0.0, max=100.0, step=0.1,
                               tooltip="stop early once a sample scores this (0-100 scale); 0 = never"),
                *sampler_inputs(),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="scores", is_output_list=True),
                io.Int.Output(display_name="seeds", is_output_list=True),
                io.String.Output(display_name="table"),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, vae, reference, seed, n, batch_size, keep,
                threshold, steps, cfg, sampler_name, scheduler, denoise=1.0) -> io.NodeOutput:
        import comfy.utils

        checks.number("threshold", threshold, 0.0, 100.0)
        run = KSampling(model, positive, negative, latent_image, vae, reference, steps, cfg, sampler_name, scheduler,
                        denoise)

        def generate(seeds: list[int]):
            decoded, scores = run.score([run.sample(run.noise(s), s) for s in seeds])
            return decoded.movedim(-1, 1), scores  # IMAGE [b,H,W,3] → [b,3,H,W], as every Ranked holds images

        best = best_of_batches(generate, n, batch_size, seed, keep, threshold or None,
                               comfy.utils.ProgressBar(n).update)
        kept = [s.index for s in best.samples]
        lines = table(best.all_scores, kept).splitlines()
        lines[0] += "   seed"
        lines[1:] = [f"{line}  {s.seed:>5}" for line, s in zip(lines[1:], best.samples)]
        return io.NodeOutput(best.images.movedim(1, -1), best.scores, best.seeds,
                             "\n".join(lines) + f"\n({best.generated} of {n} sampled)")
