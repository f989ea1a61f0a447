"""Guided vs unguided sampling: wall time, peak memory, and identity gain on a held-out scorer.

SD1.5 architecture (UNet2DConditionModel and AutoencoderKL at SD1.5 sizes, random weights,
prompt embeddings given directly so no text model is needed), DDIM, CFG 7.5. Guidance on
half of the steps, one inner step, guided by ID-Sim DINOv2 ViT-B/14 (real size, random) and
judged by ID-Sim DINOv3 ViT-B/16 (another random network). Target: guided <= 2.0x unguided
at 512 px on a GPU. On the CPU, use a small size:

    python benchmarks/guidance_bench.py --size 128 --steps 8          # CPU
    python benchmarks/guidance_bench.py --device cuda --size 512 --steps 20
"""

from __future__ import annotations

import argparse
import resource

import torch
from common import random_idsim, timed
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from idguide import IdentityGuidanceCallback


def sd15_pipeline(device, dtype) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)  # the SD1.5 UNet config
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--decode-size", type=int, default=512)
    args = parser.parse_args()
    device = args.device
    pipe = sd15_pipeline(device, torch.float32)
    guide = random_idsim("dinov2-vitb14", device)
    judge = random_idsim("dinov3-vitb16", device)
    g = torch.Generator().manual_seed(123)
    reference = torch.rand(1, 3, 256, 256, generator=g).to(device)
    embeds = torch.randn(1, 77, 768, generator=g).to(device)
    common = dict(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), height=args.size,
                  width=args.size, num_inference_steps=args.steps, guidance_scale=7.5, output_type="pt")
    callback = IdentityGuidanceCallback(guide, reference, scale=args.scale, start=0.0, end=0.5, inner_steps=1,
                                        decode_size=args.decode_size)

    def run(seed, guided):
        kwargs = dict(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=callback.tensor_inputs) \
            if guided else {}
        return pipe(generator=torch.Generator().manual_seed(seed), **common, **kwargs).images

    run(0, True)  # warm-up both paths
    ref_judge = judge.embed(reference)
    results = {}
    for guided in (False, True):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        images, seconds = [], 0.0
        for seed in range(args.seeds):
            holder = {}
            seconds += timed(lambda: holder.setdefault("x", run(seed, guided)), device)
            images.append(holder["x"])
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        batch = torch.cat(images)
        results[guided] = dict(
            seconds=seconds / args.seeds, peak=peak,
            guide=guide.score(guide.embed(reference), batch).mean().item(),
            judge=judge.score(ref_judge, batch).mean().item(),
        )
    plain, guided = results[False], results[True]
    label = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB (cumulative)"
    print(f"SD1.5 architecture, {args.size}px, {args.steps} DDIM steps, CFG 7.5, {device}, "
          f"guidance on steps [0, 0.5), 1 inner step, decode <= {args.decode_size}px, {args.seeds} seeds")
    for name, r in (("unguided", plain), ("guided", guided)):
        print(f"  {name:9} {r['seconds']:8.2f} s/image   {label} {r['peak']:8.0f}   "
              f"guide-scorer sim {r['guide']:.4f}   held-out sim {r['judge']:.4f}")
    print(f"  wall-time ratio guided / unguided: {guided['seconds'] / plain['seconds']:.2f}x (target <= 2.0x on GPU)")
    print(f"  similarity gain: guide scorer {guided['guide'] - plain['guide']:+.4f}, "
          f"held-out scorer {guided['judge'] - plain['judge']:+.4f} (random-weight scorers)")


if __name__ == "__main__":
    main()
