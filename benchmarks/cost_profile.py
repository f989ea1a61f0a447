"""What each component of a guided sampling step costs at a real model's size: a cost profile.

For a model family (Stable Diffusion 1.5, SDXL, SD3, Flux) at a resolution, every component the
proving ground counts — the denoiser (one evaluation of one image), the VAE decoder forward and
forward+backward, the TAESD-family tiny decoder likewise, the VAE encoder, and an identity scorer
forward and forward+backward at its own input size — is built from the published architecture
with random weights (nothing is downloaded: costs do not depend on the values). FLOPs are counted
with torch's ``FlopCounterMode`` on the meta device (no memory, device-independent); seconds are
measured on ``--device`` for the components whose FLOPs fit ``--max-tflops`` (best of
``--repeats``; ``null`` where not measured).

    python benchmarks/cost_profile.py --family sd15 --size 512 --scorer idsim-dinov2-vitl14 \
        --device cpu --dtype float32 --out benchmarks/profiles/sd15-512-idsim-dinov2-vitl14.json
    python benchmarks/cost_profile.py --family sdxl --size 1024 --scorer nearid --max-tflops 0 --out x.json

The file: ``{"family", "size", "device", "dtype", "scorer", "components": {NAME: {"flops", "seconds"}}}``
with NAME one of ``unet dec dec_grad tiny_dec tiny_dec_grad enc scorer scorer_grad`` — the counts
``steering_bench.py --profile`` prices samples with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

FAMILIES = ("sd15", "sdxl", "sd3", "flux")
SCORERS = ("idsim-dinov2-vitl14", "nearid")
COMPONENTS = ("unet", "dec", "dec_grad", "tiny_dec", "tiny_dec_grad", "enc", "scorer", "scorer_grad")

# Published configurations (the config.json of each model's repository), as constructor arguments.
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, norm_num_groups=32, sample_size=512)
VAES = {  # runwayml/stable-diffusion-v1-5, stabilityai/sdxl-vae, stable-diffusion-3-medium, FLUX.1-dev
    "sd15": {**SD_VAE, "scaling_factor": 0.18215},
    "sdxl": {**SD_VAE, "scaling_factor": 0.13025, "sample_size": 1024},
    "sd3": {**SD_VAE, "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609,
            "use_quant_conv": False, "use_post_quant_conv": False, "sample_size": 1024},
    "flux": {**SD_VAE, "latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159,
             "use_quant_conv": False, "use_post_quant_conv": False, "sample_size": 1024},
}
TINY = {"sd15": 4, "sdxl": 4, "sd3": 16, "flux": 16}  # madebyollin/taesd, taesdxl, taesd3, taef1: latent channels
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SD3_TRANSFORMER = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                       num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                       pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
TEXT_TOKENS = {"sd15": 77, "sdxl": 77, "sd3": 77 + 256, "flux": 512}  # the pipelines' default prompt lengths


@dataclass
class Component:
    """``build()`` → module on the current default device; ``inputs(device, dtype)`` → (args, kwargs);
    ``output(module, args, kwargs)`` → the tensor a backward starts from; ``grad``: forward+backward
    with respect to the first input (the latents, or the scorer's pixels), weights frozen."""

    build: Callable[[], torch.nn.Module]
    inputs: Callable[[torch.device, torch.dtype], tuple[tuple, dict]]
    output: Callable[..., torch.Tensor]
    grad: bool = False


def components(family: str, size: int, scorer: str) -> dict[str, Component]:
    from diffusers import AutoencoderKL, AutoencoderTiny

    if size % 16:
        raise SystemExit(f"--size must be a multiple of 16, got {size}")
    channels, side = VAES[family]["latent_channels"], size // 8
    latent = lambda d, t: ((torch.randn(1, channels, side, side, device=d, dtype=t),), {})  # noqa: E731
    image = lambda d, t: ((torch.rand(1, 3, size, size, device=d, dtype=t) * 2 - 1,), {})  # noqa: E731
    vae = lambda: AutoencoderKL(**VAES[family])  # noqa: E731
    tiny = lambda: AutoencoderTiny(latent_channels=TINY[family])  # noqa: E731
    decode = lambda m, args, kw: m.decode(*args).sample  # noqa: E731
    found = {
        "unet": denoiser(family, size),
        "dec": Component(vae, latent, decode),
        "dec_grad": Component(vae, latent, decode, grad=True),
        "tiny_dec": Component(tiny, latent, decode),
        "tiny_dec_grad": Component(tiny, latent, decode, grad=True),
        "enc": Component(vae, image, lambda m, args, kw: m.encode(*args).latent_dist.mean),
    }
    build, pixels = scorer_at_size(scorer)
    encode = lambda m, args, kw: m.encode(*args).vector  # noqa: E731
    found["scorer"] = Component(build, pixels, encode)
    found["scorer_grad"] = Component(build, pixels, encode, grad=True)
    return found


def denoiser(family: str, size: int) -> Component:
    """One evaluation of one image, with the conditioning the family's pipeline passes."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel, UNet2DConditionModel

    tokens, side = TEXT_TOKENS[family], size // 8
    if family in ("sd15", "sdxl"):
        config = SD15_UNET if family == "sd15" else SDXL_UNET

        def inputs(d, t):
            kwargs = {"encoder_hidden_states": torch.randn(1, tokens, config["cross_attention_dim"], device=d, dtype=t)}
            if family == "sdxl":
                kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, 1280, device=d, dtype=t),
                                               "time_ids": torch.randn(1, 6, device=d, dtype=t)}
            return (torch.randn(1, 4, side, side, device=d, dtype=t), torch.tensor([500.0], device=d)), kwargs

        return Component(lambda: UNet2DConditionModel(**config), inputs, lambda m, a, kw: m(*a, **kw).sample)
    if family == "sd3":
        def inputs(d, t):
            return (), {"hidden_states": torch.randn(1, 16, side, side, device=d, dtype=t),
                        "encoder_hidden_states": torch.randn(1, tokens, 4096, device=d, dtype=t),
                        "pooled_projections": torch.randn(1, 2048, device=d, dtype=t),
                        "timestep": torch.tensor([500.0], device=d)}

        return Component(lambda: SD3Transformer2DModel(**SD3_TRANSFORMER), inputs, lambda m, a, kw: m(**kw).sample)

    def inputs(d, t):  # Flux: 2×2-packed latents, one token per 16×16 pixels
        grid = size // 16
        ids = torch.zeros(grid, grid, 3, device=d)
        ids[..., 1] += torch.arange(grid, device=d)[:, None]
        ids[..., 2] += torch.arange(grid, device=d)[None, :]
        return (), {"hidden_states": torch.randn(1, grid * grid, 64, device=d, dtype=t),
                    "encoder_hidden_states": torch.randn(1, tokens, 4096, device=d, dtype=t),
                    "pooled_projections": torch.randn(1, 768, device=d, dtype=t),
                    "timestep": torch.tensor([0.5], device=d), "guidance": torch.tensor([3.5], device=d),
                    "img_ids": ids.reshape(-1, 3), "txt_ids": torch.zeros(tokens, 3, device=d)}

    return Component(lambda: FluxTransformer2DModel(**FLUX_TRANSFORMER), inputs, lambda m, a, kw: m(**kw).sample)


def scorer_at_size(name: str) -> tuple[Callable[[], torch.nn.Module], Callable]:
    """An identity scorer with random weights at its published size, and its model input."""
    if name == "idsim-dinov2-vitl14":
        from idguide.scorers.dino import DinoConfig, DinoViT
        from idguide.scorers.idsim import IdSimHead, IdSimScorer

        def build():  # DINOv2 ViT-L/14 (+ the ID-Sim heads) at 448 px
            cfg = DinoConfig(dim=1024, depth=24, heads=16, patch=14, mlp_hidden=4096, registers=0, rope=False,
                             pos_grid=37, eps=1e-6, k_bias_mask=False)
            return IdSimScorer(name, DinoViT(cfg), IdSimHead(1024, 512, torch.Size([])),
                               IdSimHead(1024, 512, torch.Size([])))

        side = 448
    elif name == "nearid":
        from transformers import SiglipVisionConfig, SiglipVisionModel

        from idguide.scorers.siglip import SiglipScorer

        def build():  # SigLIP2 SO400M/14 at 384 px with its attention-pooling head
            config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                        num_attention_heads=16, image_size=384, patch_size=14)
            return SiglipScorer(name, SiglipVisionModel(config), 384, "map")

        side = 384
    else:
        raise SystemExit(f"--scorer must be one of {', '.join(SCORERS)}, got {name!r}")
    return build, lambda d, t: ((torch.rand(1, 3, side, side, device=d, dtype=t) * 2 - 1,), {})


def run(component: Component, module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    args, kwargs = component.inputs(device, dtype)
    if component.grad:
        first = (args[0] if args else next(iter(kwargs.values()))).requires_grad_(True)
        out = component.output(module, args, kwargs)
        out.backward(torch.ones_like(out))
        assert first.grad is not None
    else:
        with torch.no_grad():
            component.output(module, args, kwargs)


def count_flops(fn: Callable[[], None]) -> int:
    """FLOPs of everything ``fn`` runs (torch's counter: matmuls, convolutions, attention; backward too)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def build_on(component: Component, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    with torch.device(device):
        module = component.build()
    if dtype != torch.float32:
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


def measure(component: Component, device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    module = build_on(component, device, dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first run warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(component, module, device, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def profile(family: str, size: int, scorer: str, device: str, dtype: str, max_tflops: float, repeats: int,
            log=print) -> dict:
    device_, dtype_ = torch.device(device), getattr(torch, dtype)
    result = {"family": family, "size": size, "device": device, "dtype": dtype, "scorer": scorer, "components": {}}
    for name, component in components(family, size, scorer).items():
        meta = torch.device("meta")
        flops = count_flops(lambda c=component: run(c, build_on(c, meta, dtype_), meta, dtype_))
        seconds = None
        if flops <= max_tflops * 1e12:
            seconds = round(measure(component, device_, dtype_, repeats), 4)
        result["components"][name] = {"flops": flops, "seconds": seconds}
        log(f"{family}-{size} {name}: {flops / 1e9:.1f} GFLOPs, "
            f"{'not timed' if seconds is None else f'{seconds:.3f} s'}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=FAMILIES, required=True)
    parser.add_argument("--size", type=int, required=True, help="image side in pixels (a multiple of 16)")
    parser.add_argument("--scorer", choices=SCORERS, default="idsim-dinov2-vitl14")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--max-tflops", type=float, default=1.6,
                        help="time only components of at most this many TFLOPs per pass (0: FLOPs only)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per component after a warm-up (the best counts)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers.utils import logging

    logging.set_verbosity_error()  # casting random-weight models needs no advice
    started = time.time()
    result = profile(args.family, args.size, args.scorer, args.device, args.dtype, args.max_tflops, args.repeats,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
