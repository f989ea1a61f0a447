"""Identity Guidance: a MODEL patch (post-CFG function) that works with every stock sampler.

Like ComfyUI's PAG / APG patches: clone the model, register one closure. The closure moves
the CFG result ("denoised", the clean estimate) with ``guidance.guided_step`` before the
sampler uses it — the function the diffusers callback calls too: step i of N is guided when
start <= i/N < end (fractions of the steps, i counted in the sampler's sigmas); the
decoder (``nodes.decoders``) is TAESD or a gradient-capable copy of the VAE's decoder
(ComfyUI loads weights as inference tensors, which cannot take part in a backward pass). The
scorer and the decoder are additional models of the patched MODEL, so ComfyUI loads and frees
them with it. Scale 0 returns the model untouched, so sampling is bit-identical.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..guidance import Augment, GuidanceSettings
from ..guidance.step import guided_step, noise_carry
from .common import ReferenceSocket, is_flow_sampling, signal_at, step_position
from .decoders import DECODER_TOOLTIP, DECODERS, decoder_for, model_space


class IdentityGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideGuidance",
            display_name="Identity Guidance",
            category="idguide",
            description="Steers any sampler toward the reference identity (differentiable identity loss on "
                        "the decoded clean estimate). Scale 0 leaves the model untouched.",
            inputs=[
                io.Model.Input("model"),
                io.Vae.Input("vae"),
                ReferenceSocket.Input("reference"),
                io.Float.Input("scale", default=2.0, min=0.0, max=20.0, step=0.05,
                               tooltip="step size of the update on the clean latent (0 = off)"),
                io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="first guided step, as a fraction of the sampling steps (as in diffusers)"),
                io.Float.Input("end", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="guidance stops at this fraction of the sampling steps"),
                io.Int.Input("every", default=1, min=1, max=100, tooltip="guide every k-th step"),
                io.Int.Input("inner_steps", default=1, min=1, max=10),
                io.Int.Input("decode_size", default=512, min=64, max=4096, step=64,
                             tooltip="decode at most this many pixels (longer side) to bound memory"),
                io.Int.Input("augment", default=0, min=0, max=32, optional=True,
                             tooltip="average the loss over this many random crops/flips of the decoded image "
                                     "(resists adversarial patterns; 0 = one plain view: fewer scorer passes, but "
                                     "on Euler-type samplers the result fools the scorer more than it changes the "
                                     "identity)"),
                io.Int.Input("recurrence", default=0, min=0, max=10, optional=True,
                             tooltip="self-recurrence: re-noise the guided estimate to the step's noise level, let "
                                     "the model denoise it and guide again, this many times per guided step "
                                     "(one more model evaluation each)"),
                io.Combo.Input("decoder", options=list(DECODERS), default="auto", optional=True,
                               tooltip=DECODER_TOOLTIP),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, vae, reference, scale, start, end, every, inner_steps, decode_size,
                augment=0, recurrence=0, decoder="auto") -> io.NodeOutput:
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if scale == 0:
            return io.NodeOutput(model)
        import comfy.samplers

        settings = GuidanceSettings(scale=scale, start=start, end=end, every=every, inner_steps=inner_steps,
                                    augment=Augment(draws=augment) if augment else None, recurrence=recurrence)
        decoder = decoder_for(vae, decode_size, decoder, model.get_model_object("latent_format"))
        flow = is_flow_sampling(model.get_model_object("model_sampling"))
        m = model.clone()
        # Loaded with the diffusion model before sampling, so ComfyUI budgets their memory together.
        m.set_additional_models("idguide", [reference.handle.patcher, decoder.patcher])

        def post_cfg_function(args):
            denoised, base = args["denoised"], args["model"]
            sigma = float(args["sigma"].flatten()[0])
            sigmas = args["model_options"].get("transformer_options", {}).get("sample_sigmas")
            index = step_position(sigmas, sigma)
            if index is None:
                raise RuntimeError("identity guidance needs the sampler's sigmas (transformer_options['sample_sigmas']), "
                                   "which every stock sampler node provides")
            num_steps = len(sigmas) - 1
            if not settings.active(index, num_steps):
                return denoised
            signal = signal_at(sigma, flow)
            following = float(sigmas[index + 1])
            carry = noise_carry(signal, sigma, signal_at(following, flow), following)
            reference.handle.load()
            denoise = None
            if settings.recurrence:
                # The model at a re-noised sample, as the sampler would call it — minus this patch.
                options = dict(args["model_options"])
                options["sampler_post_cfg_function"] = [f for f in options.get("sampler_post_cfg_function", [])
                                                        if f is not post_cfg_function]
                denoise = lambda x: comfy.samplers.sampling_function(  # noqa: E731
                    base, x, args["sigma"], args["uncond"], args["cond"], args["cond_scale"], options)
            return guided_step(args["input"], denoised, model_space(decoder, base), reference, settings, index,
                               num_steps, signal, sigma, carry, denoise)

        m.set_model_sampler_post_cfg_function(post_cfg_function)
        return io.NodeOutput(m)
