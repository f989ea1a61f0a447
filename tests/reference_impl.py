"""Step-by-step reference computations, written from the published descriptions and applied
to the raw tensors of the checkpoint files. Independent of idguide's modules on purpose:
explicit softmax attention, explicit RoPE, explicit LoRA merge, explicit heads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


def layer_norm(x, state, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), state[prefix + "weight"], state[prefix + "bias"], eps)


def merged_backbone(cache: Path, id_sim_type: str, backbone_file: str) -> dict:
    state = torch.load(cache / "checkpoints" / backbone_file, weights_only=True)
    config = json.loads((cache / id_sim_type / "adapter_config.json").read_text())
    lora = load_file(str(cache / id_sim_type / "adapter_model.safetensors"))
    scale = config["lora_alpha"] / config["r"]
    state = dict(state)
    for key in lora:
        if key.endswith("lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            target = module.split("extractor.model.")[1] + ".weight"
            state[target] = state[target] + scale * lora[module + ".lora_B.weight"] @ lora[key]
    return state


def meta_dino_tokens(state: dict, pixels: torch.Tensor, offset: float | None = 0.1, final_norm=False):
    """Meta's DINOv2/DINOv3 forward: all output tokens ``[CLS, registers, patches]``."""
    dim = state["cls_token"].shape[-1]
    rope = "rope_embed.periods" in state
    eps = 1e-5 if rope else 1e-6
    heads = dim // 64
    patch = state["patch_embed.proj.weight"].shape[-1]
    b, _, h, w = pixels.shape
    gh, gw = h // patch, w // patch
    x = F.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)
    cls = state["cls_token"].expand(b, -1, -1)
    if rope:
        regs = state["storage_tokens"].expand(b, -1, -1)
        x = torch.cat([cls, regs, x], dim=1)
        # RoPE from the stored periods: patch centres in [-1, 1], angle = 2π·coord / period.
        periods = state["rope_embed.periods"]
        ys = [(i + 0.5) / gh * 2 - 1 for i in range(gh)]
        xs = [(j + 0.5) / gw * 2 - 1 for j in range(gw)]
        coords = torch.tensor([[y, xx] for y in ys for xx in xs])  # [N, 2], row-major
        angles = torch.cat([2 * math.pi * coords[:, 0:1] / periods, 2 * math.pi * coords[:, 1:2] / periods], dim=1)
        angles = torch.cat([angles, angles], dim=1)  # [N, head_dim]
        sin, cos = angles.sin(), angles.cos()
    else:
        pos = state["pos_embed"]
        m = int(math.sqrt(pos.shape[1] - 1))
        grid = pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
        if offset is None:
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        else:
            grid = F.interpolate(grid, scale_factor=((gh + offset) / m, (gw + offset) / m), mode="bicubic")
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)], dim=1)
        x = torch.cat([cls, x], dim=1) + pos
    n_prefix = x.shape[1] - gh * gw
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        y = layer_norm(x, state, p + "norm1.", eps)
        bias = state[p + "attn.qkv.bias"]
        if p + "attn.qkv.bias_mask" in state:
            bias = bias * state[p + "attn.qkv.bias_mask"]
        qkv = y @ state[p + "attn.qkv.weight"].T + bias
        q, k, v = qkv.split(dim, dim=-1)
        split = lambda t: t.reshape(b, -1, heads, dim // heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        if rope:
            def rot(t):
                pre, pt = t[:, :, :n_prefix], t[:, :, n_prefix:]
                half = pt.shape[-1] // 2
                rotated = torch.cat([-pt[..., half:], pt[..., :half]], dim=-1)
                return torch.cat([pre, pt * cos + rotated * sin], dim=2)

            q, k = rot(q), rot(k)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim // heads), dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, dim)
        y = y @ state[p + "attn.proj.weight"].T + state[p + "attn.proj.bias"]
        x = x + state[p + "ls1.gamma"] * y
        y = layer_norm(x, state, p + "norm2.", eps)
        y = F.gelu(y @ state[p + "mlp.fc1.weight"].T + state[p + "mlp.fc1.bias"])
        y = y @ state[p + "mlp.fc2.weight"].T + state[p + "mlp.fc2.bias"]
        x = x + state[p + "ls2.gamma"] * y
    if not rope and "register_tokens" in state:
        raise NotImplementedError
    return layer_norm(x, state, "norm.", eps) if final_norm else x


def idsim_head(state: dict, x: torch.Tensor) -> torch.Tensor:
    y = F.layer_norm(x, (x.shape[-1],), state["ln.weight"], state["ln.bias"], 1e-5)
    y = F.silu(y @ state["fc1.weight"].T + state["fc1.bias"]) @ state["fc2.weight"].T + state["fc2.bias"]
    return y + torch.sigmoid(state["beta_logit"]) * x


def centre_unit(e: torch.Tensor) -> torch.Tensor:
    e = e - e.mean(-1, keepdim=True)
    return e / e.norm(dim=-1, keepdim=True)


def idsim_embed(cache: Path, id_sim_type: str, backbone_file: str, pixels: torch.Tensor):
    """(cls [B,D], patches [B,N,D]) as the official ID-Sim computes them."""
    state = merged_backbone(cache, id_sim_type, backbone_file)
    tokens = meta_dino_tokens(state, pixels, final_norm=False)
    n_prefix = 5 if "rope_embed.periods" in state else 1
    mlp_cls = torch.load(cache / id_sim_type / "mlp_cls.pth", weights_only=True)
    mlp_patch = torch.load(cache / id_sim_type / "mlp_patch.pth", weights_only=True)
    return centre_unit(idsim_head(mlp_cls, tokens[:, 0])), centre_unit(idsim_head(mlp_patch, tokens[:, n_prefix:]))


def cos_dist(a, b):
    return 1 - (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
