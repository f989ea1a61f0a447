"""Peak memory of one sampling step at a real model's size: unguided, and guided with given settings.

Every module is built from its published architecture (``cost_profile.py``'s configurations) on
fake tensors: nothing is allocated or computed, yet every operator runs with its real shapes and
dtypes, and the bytes of the tensors alive at each moment are summed — the peak is what a GPU's
``max_memory_allocated`` reports for the same work (less the allocator's rounding and the CUDA
context). It takes seconds on any machine.

A step's peak = the weights a pipeline keeps loaded (denoiser, VAE, text encoders; guided: also the
scorer, and TAESD or an fp32 VAE copy where the VAE needs one) + the largest transient: the
denoiser's forward on the CFG batch, or (guided) decoding the clean estimate with gradients, the
scorer's forward on the views and the backward pass to the latents.

    python benchmarks/step_memory.py --family sd15 --size 512 --decoder vae --views 4     # 0.1's defaults
    python benchmarks/step_memory.py --family sdxl --size 1024 --decoder tiny --views 1
    python benchmarks/step_memory.py --table benchmarks/results/guided_step_peak_memory.md           # the shipped table
"""

from __future__ import annotations

import argparse
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from cost_profile import SCORERS, TINY, VAES, denoiser, scorer_at_size  # benchmarks/ is the script's folder

GiB = 2**30
# Text encoders a pipeline keeps loaded: CLIP ViT-L/14's text tower; SDXL adds OpenCLIP bigG's.
TEXT = {"sd15": [dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)],
        "sdxl": [dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
                 dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                      projection_dim=1280)]}


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages that operators create while active: now and at the peak."""

    def __init__(self):
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.sizes:
                    self.sizes[key] = storage.nbytes()
                    self.current += self.sizes[key]
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.current -= self.sizes.pop(key, 0)


def transient(fn) -> int:
    """Peak bytes of what ``fn`` allocates (weights built before are not counted)."""
    with LiveBytes() as live:
        fn()
    return live.peak


def built(make, dtype: torch.dtype) -> torch.nn.Module:
    """``make()`` on the meta device (random inits that read values cannot run on fake tensors), its
    parameters and buffers then made fake tensors of ``dtype`` (call inside the ``FakeTensorMode``)."""
    with torch.device("meta"):
        module = make().eval().requires_grad_(False)
    for sub in module.modules():
        for table in (sub._parameters, sub._buffers):
            for name, value in table.items():
                if value is not None:
                    fake = torch.empty(value.shape, dtype=dtype if value.is_floating_point() else value.dtype)
                    table[name] = torch.nn.Parameter(fake, requires_grad=False) if table is sub._parameters else fake
    return module


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.untyped_storage().nbytes() for t in [*module.parameters(), *module.buffers()])


@dataclass(frozen=True)
class Guided:
    decoder: str = "tiny"  # "vae" or "tiny"
    decode_size: int | None = 512
    views: int = 1
    scorer: str = "idsim-dinov2-vitl14"
    scorer_dtype: str = "float32"
    checkpointing: bool = False

    def label(self) -> str:
        return (f"{self.decoder} decoder at {self.decode_size or 'full'} px, {self.views} view(s), {self.scorer} "
                f"in {self.scorer_dtype}" + (", checkpointed" if self.checkpointing else ""))


def step_memory(family: str, size: int, dtype: str, guided: Guided) -> dict:
    """Bytes: the unguided step, the guided one, and their parts."""
    from diffusers import AutoencoderKL, AutoencoderTiny
    from transformers import CLIPTextConfig, CLIPTextModel

    dt, scorer_dt = getattr(torch, dtype), getattr(torch, guided.scorer_dtype)
    with FakeTensorMode(allow_non_fake_inputs=True):
        component = denoiser(family, size)
        unet = built(component.build, dt)
        vae = built(lambda: AutoencoderKL(**VAES[family]), dt)
        texts = [built(lambda c=c: CLIPTextModel(CLIPTextConfig(**c)), dt) for c in TEXT.get(family, [])]
        build, _ = scorer_at_size(guided.scorer)
        scorer = built(build, scorer_dt)
        scorer.set_gradient_checkpointing(guided.checkpointing)
        tiny = built(lambda: AutoencoderTiny(latent_channels=TINY[family]), dt)
        # SDXL's VAE overflows in fp16 (force_upcast): the guidance decodes with an fp32 copy of it.
        upcast = family == "sdxl" and dt == torch.float16 and guided.decoder == "vae"
        decoder = built(lambda: AutoencoderKL(**VAES[family]), torch.float32) if upcast else (
            vae if guided.decoder == "vae" else tiny)
        resident = weight_bytes(unet) + weight_bytes(vae) + sum(weight_bytes(t) for t in texts)
        extra = weight_bytes(scorer) + (weight_bytes(decoder) if decoder is not vae else 0)

        def unet_step():
            args, kwargs = component.inputs(torch.device("cpu"), dt)
            batch = lambda t: torch.cat([t, t]) if isinstance(t, torch.Tensor) and t.dim() > 1 else t  # noqa: E731
            args = tuple(batch(a) for a in args)
            kwargs = {k: ({kk: batch(vv) for kk, vv in v.items()} if isinstance(v, dict) else batch(v))
                      for k, v in kwargs.items() if k not in ("img_ids", "txt_ids")} | {
                k: v for k, v in kwargs.items() if k in ("img_ids", "txt_ids")}
            with torch.no_grad():
                component.output(unet, args, kwargs)

        channels, side = VAES[family]["latent_channels"], size // 8
        input_side = 448 if guided.scorer == "idsim-dinov2-vitl14" else 384

        def guidance():
            latents = torch.randn(1, channels, side, side, dtype=torch.float32, requires_grad=True)
            z = latents
            if guided.decode_size is not None and size > guided.decode_size:
                s = guided.decode_size // 8
                z = F.interpolate(z, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            dtype_in = next(decoder.parameters()).dtype
            images = (decoder.decode(z.to(dtype_in)).sample.float() / 2 + 0.5).clamp(0, 1)
            pixels = F.interpolate(images, size=(input_side, input_side), mode="bicubic", align_corners=False)
            pixels = pixels.repeat(guided.views, 1, 1, 1).to(scorer_dt)
            loss = scorer.encode(pixels).vector.float().sum()
            torch.autograd.grad(loss, latents)

        def final_decode():
            with torch.no_grad():
                vae.decode(torch.randn(1, channels, side, side, dtype=dt))

        unet_peak, guide_peak, decode_peak = transient(unet_step), transient(guidance), transient(final_decode)
    unguided = resident + unet_peak
    guided_step = resident + extra + max(unet_peak, guide_peak)
    return {"family": family, "size": size, "dtype": dtype, "settings": guided.label(), "resident": resident,
            "extra_weights": extra, "unet_transient": unet_peak, "guidance_transient": guide_peak,
            "final_decode_transient": decode_peak, "unguided": unguided, "guided": guided_step,
            "ratio": guided_step / unguided}


def describe(r: dict) -> str:
    return (f"{r['family']}-{r['size']} {r['dtype']}, {r['settings']}: unguided step {r['unguided'] / GiB:.2f} GiB, "
            f"guided {r['guided'] / GiB:.2f} GiB ({r['ratio']:.2f}×; weights +{r['extra_weights'] / GiB:.2f}, "
            f"guidance transient {r['guidance_transient'] / GiB:.2f} vs the denoiser's {r['unet_transient'] / GiB:.2f})")


# The table: 0.1's defaults against today's, and the levers one at a time.
TABLE = [("0.1 defaults", Guided("vae", 512, 4)), ("VAE, one view", Guided("vae", 512, 1)),
         ("defaults", Guided("tiny", 512, 1)),
         ("scorer in float16", Guided("tiny", 512, 1, scorer_dtype="float16")),
         ("scorer checkpointed", Guided("tiny", 512, 1, checkpointing=True)),
         ("scorer in float16, checkpointed", Guided("tiny", 512, 1, scorer_dtype="float16", checkpointing=True)),
         ("NearID", Guided("tiny", 512, 1, "nearid"))]


def table(path: Path) -> None:
    lines = ["Peak memory of one sampling step (`benchmarks/step_memory.py`; real architectures, random weights on fake "
             "tensors: the bytes of live tensors, as a GPU's max_memory_allocated counts them). Pipeline in float16; "
             "scorer ID-Sim (DINOv2 ViT-L/14 at 448 px) in float32 unless named. Weights kept loaded: denoiser, VAE, "
             "text encoders (+ scorer, + TAESD or an fp32 VAE copy when guided).", "",
             "| model | setting | unguided step GiB | guided step GiB | ratio | guidance transient GiB |",
             "|---|---|---|---|---|---|"]
    for family, size in (("sd15", 512), ("sdxl", 1024)):
        for name, settings in TABLE:
            r = step_memory(family, size, "float16", settings)
            print(describe(r), file=sys.stderr, flush=True)
            lines.append(f"| {family}-{size} | {name}: {settings.label()} | {r['unguided'] / GiB:.2f} | "
                         f"{r['guided'] / GiB:.2f} | {r['ratio']:.2f}× | {r['guidance_transient'] / GiB:.2f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("sd15", "sdxl"), default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16")
    parser.add_argument("--decoder", choices=("vae", "tiny"), default="tiny")
    parser.add_argument("--decode-size", type=int, default=512)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--scorer", choices=SCORERS, default="idsim-dinov2-vitl14")
    parser.add_argument("--scorer-dtype", choices=("float16", "bfloat16", "float32"), default="float32")
    parser.add_argument("--checkpointing", action="store_true", help="the scorer's blocks recomputed in the backward")
    parser.add_argument("--table", type=Path, help="write the table of settings to this file instead")
    args = parser.parse_args(argv)
    from diffusers.utils import logging

    logging.set_verbosity_error()
    if args.table:
        table(args.table)
        return 0
    settings = Guided(args.decoder, args.decode_size, args.views, args.scorer, args.scorer_dtype, args.checkpointing)
    print(describe(step_memory(args.family, args.size, args.dtype, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
