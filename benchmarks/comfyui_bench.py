"""Identity Guidance and Best-of-N inside ComfyUI's own sampler (in-process, random weights at
real sizes: SD1.5 UNet and VAE, ID-Sim DINOv2 ViT-B/14).

Run with a Python that has ComfyUI's requirements and this package:

    python benchmarks/comfyui_bench.py --comfyui /path/to/ComfyUI [--cpu] [--size 128 --steps 8]

Prints, from one run: (1) a KSampler run patched by Identity Guidance vs the same run unpatched —
total ratio and the added seconds per guided step; (2) the Best-of-N Sampler node vs N plain
samples + N decodes + N scorer forwards done by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import random_idsim  # noqa: E402

SD15_UNET = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], num_heads=8, context_dim=768,
                 use_linear_in_transformer=False, legacy=False, adm_in_channels=None, use_spatial_transformer=True,
                 use_temporal_attention=False, use_temporal_resblock=False)


def setup(comfyui: str, cpu: bool):
    sys.path.insert(0, comfyui)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    import comfy.ldm.models.autoencoder as autoencoder
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models

    device = mm.get_torch_device()
    config = comfy.supported_models.SD15(dict(SD15_UNET))
    config.set_inference_dtype(torch.float32 if cpu else torch.float16, None)
    model = config.get_model({})
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            p.copy_(torch.randn(p.shape) * 0.02 + (1.0 if "norm" in name and p.dim() == 1 else 0.0))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    state = {k: torch.randn(v.shape) * (0.02 if v.dim() > 1 else 0.01) + (1.0 if "norm" in k and k.endswith("weight") else 0)
             for k, v in autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4).state_dict().items()}
    return patcher, comfy.sd.VAE(sd=state), device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", required=True, help="a ComfyUI checkout")
    parser.add_argument("--cpu", action="store_true", help="ComfyUI's --cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--n", type=int, default=4, help="Best-of-N samples")
    args = parser.parse_args()
    cpu = args.cpu or not torch.cuda.is_available()
    patcher, vae, device = setup(args.comfyui, cpu)

    import comfy.sample

    from idguide.nodes.best_of_n import IdentityBestOfN
    from idguide.nodes.common import ComfyReference, ComfyScorer
    from idguide.nodes.guidance import IdentityGuidance

    handle = ComfyScorer(random_idsim("dinov2-vitb14", "cpu"))
    reference = ComfyReference(handle, torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)),
                               "mean")
    g = torch.Generator().manual_seed(2)
    positive = [[torch.randn(1, 77, 768, generator=g), {}]]
    negative = [[torch.randn(1, 77, 768, generator=g), {}]]
    latent = torch.zeros(1, 4, args.size // 8, args.size // 8)

    def sample(model, seed):
        noise = comfy.sample.prepare_noise(latent, seed)
        return comfy.sample.sample(model, noise, args.steps, 7.5, "euler", "normal", positive, negative, latent,
                                   seed=seed, disable_pbar=True)

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    import idguide.guidance.step as guidance_step  # what the patch calls through guided_step

    calls = []
    real = guidance_step.guided_denoised

    def counted(*a, **k):  # how many steps the patch really guided
        calls.append(1)
        return real(*a, **k)

    guidance_step.guided_denoised = counted
    guided_model = IdentityGuidance.execute(patcher, vae, reference, 1.0, 0.0, 0.5, 1, 1, 512).result[0]
    with torch.inference_mode():
        sample(patcher, 0)  # warm-up: loads the model
        sample(guided_model, 0)
        plain_s, plain = timed(lambda: sample(patcher, 0))
        calls.clear()
        guided_s, guided = timed(lambda: sample(guided_model, 0))
    guided_steps = len(calls)
    print(f"device {device}, SD1.5 UNet+VAE real size (random), {args.size} px, {args.steps} euler steps, CFG 7.5; "
          f"guidance by ID-Sim DINOv2-B/14 (real size, random), start 0, end 0.5")
    print(f"KSampler unpatched {plain_s:.2f} s, patched {guided_s:.2f} s -> ratio {guided_s / plain_s:.2f}x; "
          f"+{(guided_s - plain_s) / guided_steps:.2f} s per guided step ({guided_steps} guided of {args.steps}); "
          f"mean |change| of the latent {float((guided - plain).abs().mean()):.4f}")

    def by_hand():
        scorer = handle.load()
        scores = []
        for seed in range(args.n):
            image = vae.decode(sample(patcher, seed))
            scores.append(float(reference.similarity(scorer.embed(image.movedim(-1, 1).to(scorer.device)))))
        return scores

    def node(batch_size):
        return IdentityBestOfN.execute(patcher, positive, negative, {"samples": latent}, vae, reference, 0, args.n,
                                       batch_size, 1, 0.0, args.steps, 7.5, "euler", "normal").result

    with torch.inference_mode():
        hand_s, _ = timed(by_hand)
        for batch_size in (1, 2):
            node_s, _ = timed(lambda: node(batch_size))
            print(f"Best-of-N, N={args.n}, batch {batch_size}: node {node_s:.2f} s vs N plain samples + decodes + "
                  f"scorer forwards {hand_s:.2f} s -> ratio {node_s / hand_s:.2f}x")


if __name__ == "__main__":
    main()
