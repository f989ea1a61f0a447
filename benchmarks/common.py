"""Shared by the benchmarks: random-weight models at real architecture sizes (timings do not
depend on the values) and a synchronised timer."""

from __future__ import annotations

import time

import torch

from idguide.scorers.dino import DinoConfig, DinoViT
from idguide.scorers.idsim import IdSimHead, IdSimScorer

ARCHS = {  # name: (dim, depth, patch, DINOv3?)  heads are 64-d
    "dinov3-vitb16": (768, 12, 16, True),
    "dinov3-vitl16": (1024, 24, 16, True),
    "dinov2-vitb14": (768, 12, 14, False),
}


def random_idsim(arch: str, device, dtype=torch.float32, mode: str = "cls") -> IdSimScorer:
    dim, depth, patch, v3 = ARCHS[arch]
    cfg = DinoConfig(dim=dim, depth=depth, heads=dim // 64, patch=patch, mlp_hidden=4 * dim,
                     registers=4 if v3 else 0, rope=v3, pos_grid=0 if v3 else 37, eps=1e-5 if v3 else 1e-6,
                     k_bias_mask=v3)
    torch.manual_seed(hash(arch) % 1000)
    vit = DinoViT(cfg)
    with torch.no_grad():  # Linear / LayerNorm keep PyTorch's init; tokens and positions get random values
        for name, p in vit.named_parameters():
            if name in ("cls_token", "pos_embed", "storage_tokens", "register_tokens"):
                p.normal_(0, 0.1)
        if v3:
            vit.rope_embed.periods.copy_(100.0 ** (2 * torch.arange(16) / 32))
    scorer = IdSimScorer(f"idsim-{arch}", vit, IdSimHead(dim, 512, torch.Size([])), IdSimHead(dim, 512, torch.Size([])),
                         mode=mode)
    return scorer.requires_grad_(False).to(device=device, dtype=dtype).eval()


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start
