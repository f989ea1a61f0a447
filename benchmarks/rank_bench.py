"""Ranking N candidates against one reference with ID-Sim at real architecture sizes.

Random weights (timings do not depend on values). Reports, from one run:
  * ours / N plain backbone forwards (same batches, already preprocessed)   target <= 1.15x
  * official-style per-pair loop (embeds both images every call) / ours      target >= 1.8x at N=16
  * peak memory, and images/s (bf16 on a GPU).

    python benchmarks/rank_bench.py                      # CPU: DINOv3 ViT-B/16, N=16
    python benchmarks/rank_bench.py --arch vitl16 --device cuda --dtype bf16 --n 64
"""

from __future__ import annotations

import argparse
import resource

import torch

from common import random_idsim, timed

from idguide.scorers.idsim import IMAGE_SIZE
from idguide.scorers.registry import default_batch_size

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["vitb16", "vitl16"], default="vitb16")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-size", type=int, help="default: 8 on a GPU, 1 on the CPU (measured faster there)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per measurement")
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = args.device

    torch.manual_seed(0)
    scorer = random_idsim(f"dinov3-{args.arch}", device, dtype)
    reference = torch.rand(1, 3, 512, 512, device=device)
    candidates = torch.rand(args.n, 3, 512, 512, device=device)
    pixels = scorer.preprocess(candidates).to(dtype)
    bs = args.batch_size or default_batch_size(device)

    def ours():
        ref = scorer.embed(reference)
        emb = scorer.embed(candidates, batch_size=bs)
        scorer.similarity(ref, emb).argsort(descending=True)

    def plain():
        with torch.inference_mode():
            for i in range(0, args.n, bs):
                scorer.backbone(pixels[i : i + bs], final_norm=False)

    def per_pair():
        # What the official API does: model(ref, candidate) embeds both images on every call.
        for i in range(args.n):
            scorer.distance(scorer.embed(reference), scorer.embed(candidates[i : i + 1]))

    ours()  # warm-up (allocator, kernels, position caches)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_ours = min(timed(ours, device) for _ in range(args.repeats))
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    t_plain = min(timed(plain, device) for _ in range(args.repeats))
    t_pair = min(timed(per_pair, device) for _ in range(args.repeats))

    print(f"ID-Sim DINOv3 {args.arch} @ {IMAGE_SIZE}px, N={args.n}, batch {bs}, {device}, {args.dtype}, "
          f"threads {torch.get_num_threads()}")
    print(f"  ours (embed ref once + N candidates, rank): {t_ours:8.3f} s   {args.n / t_ours:8.2f} images/s")
    print(f"  N plain backbone forwards:                  {t_plain:8.3f} s")
    print(f"  official-style per-pair loop:               {t_pair:8.3f} s")
    print(f"  ratio ours / plain backbone:   {t_ours / t_plain:6.3f}x   (target <= 1.15x)")
    print(f"  speed-up vs per-pair loop:     {t_pair / t_ours:6.3f}x   (target >= 1.8x at N=16)")
    label = "peak GPU memory allocated" if device.startswith("cuda") else "peak RSS of the process"
    print(f"  {label}: {peak:.0f} MiB (RSS before timing: {rss_before / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
