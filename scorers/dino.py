"""DINOv2 / DINOv3 ViTs with parameter names exactly as in Meta's published ``.pth`` files.

Meta's layout is the reference for ID-Sim (its features are Meta's, with Meta's position
embedding interpolation and the stored RoPE periods), so the module mirrors it and loads
those files with a plain strict ``load_state_dict``. Hugging Face-format DINOv2 folders are
mapped onto the same names (``hf_to_meta``). Sizes are read from the tensors; heads are
64-d in every official DINO ViT (DINOv3 files confirm it through the RoPE periods).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import WeightsError
from .weights import read_json, read_safetensors

HEAD_DIM = 64
HF_FILES = ("config.json", "model.safetensors")
TRAINING_ONLY_KEYS = ("mask_token",)  # used only for masked-image pre-training


@dataclass(frozen=True)
class DinoConfig:
    dim: int
    depth: int
    heads: int
    patch: int
    mlp_hidden: int
    registers: int
    rope: bool  # DINOv3: RoPE on patch tokens; DINOv2: learned absolute position embedding
    pos_grid: int  # DINOv2: side of the stored position-embedding grid (37 for 518 px / 14)
    eps: float
    k_bias_mask: bool  # DINOv3 keeps a k-bias in the file but masks it to zero
    # DINOv2 position-embedding resize: Meta's hub models use scale_factor (grid + offset) / M;
    # transformers' Dinov2Model uses size=grid (offset None). The two give different features.
    interpolate_offset: float | None = 0.1

    @staticmethod
    def from_state(state: dict[str, torch.Tensor], path: Path, heads: int | None = None, eps: float | None = None):
        def need(key):
            if key not in state:
                raise WeightsError(f"{path}: not a DINO ViT checkpoint in Meta's layout: key '{key}' is missing")
            return state[key]

        dim = need("cls_token").shape[-1]
        depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))), default=-1)
        if depth == 0:
            raise WeightsError(f"{path}: no 'blocks.N.*' keys: not a DINO ViT checkpoint in Meta's layout")
        rope = "rope_embed.periods" in state
        if rope:
            head_dim = 4 * state["rope_embed.periods"].shape[0]
            heads = heads or dim // head_dim
        registers = state.get("storage_tokens", state.get("register_tokens"))
        pos_grid = 0
        if not rope:
            n = need("pos_embed").shape[1] - 1
            pos_grid = math.isqrt(n)
            if pos_grid * pos_grid != n:
                raise WeightsError(f"{path}: 'pos_embed' has {n} patch positions, not a square grid")
        return DinoConfig(
            dim=dim,
            depth=depth,
            heads=heads or max(dim // HEAD_DIM, 1),
            patch=need("patch_embed.proj.weight").shape[-1],
            mlp_hidden=need("blocks.0.mlp.fc1.weight").shape[0],
            registers=0 if registers is None else registers.shape[1],
            rope=rope,
            pos_grid=pos_grid,
            eps=eps if eps is not None else (1e-5 if rope else 1e-6),
            k_bias_mask="blocks.0.attn.qkv.bias_mask" in state,
        )


class QKV(nn.Linear):
    """Fused q,k,v projection; DINOv3 multiplies the bias by a stored mask (k third = 0)."""

    def __init__(self, dim: int, masked: bool):
        super().__init__(dim, 3 * dim)
        if masked:
            self.register_buffer("bias_mask", torch.ones(3 * dim))
        else:
            self.bias_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if self.bias_mask is None else self.bias * self.bias_mask
        return F.linear(x, self.weight, bias)


class Attention(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = QKV(cfg.dim, cfg.k_bias_mask)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = Attention(cfg)
        self.ls1 = LayerScale(cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = Mlp(cfg.dim, cfg.mlp_hidden)
        self.ls2 = LayerScale(cfg.dim)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class RopeEmbed(nn.Module):
    def __init__(self, head_dim: int):
        super().__init__()
        # The stored periods were rounded through bf16 when DINOv3 was trained: use them as is.
        self.register_buffer("periods", torch.ones(head_dim // 4))

    def forward(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.periods.device
        coords_h = torch.arange(0.5, rows, device=device, dtype=torch.float32) / rows
        coords_w = torch.arange(0.5, cols, device=device, dtype=torch.float32) / cols
        coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # [HW, 2] in [-1, 1] ("separate" normalisation, no train-time jitter)
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]
        angles = angles.flatten(1, 2).tile(2)  # [HW, head_dim]
        return torch.sin(angles), torch.cos(angles)


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the patch tokens' features; prefix tokens (CLS, registers) are left as they are."""
    sin, cos = rope
    prefix = x.shape[-2] - sin.shape[-2]
    head, patches = x[..., :prefix, :], x[..., prefix:, :]
    first, second = patches.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    patches = patches * cos.to(x.dtype) + rotated * sin.to(x.dtype)
    return torch.cat((head, patches), dim=-2)


class DinoViT(nn.Module):
    """Meta's DINO ViT; ``forward`` returns all tokens ``[CLS, registers, patches]``."""

    def __init__(self, cfg: DinoConfig):
        super().__init__()
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        if cfg.rope:
            self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.dim)) if cfg.registers else None
            self.rope_embed = RopeEmbed(cfg.dim // cfg.heads)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.pos_grid**2, cfg.dim))
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.dim)) if cfg.registers else None
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self._position_cache: dict = {}
        # Differentiable passes keep one block's activations, recomputing them in the backward pass
        # (``Scorer.set_gradient_checkpointing``); inference is unaffected.
        self.checkpointing = False

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.cfg.registers

    def _cached(self, key, make):
        # Position terms depend only on the grid; recomputing them per call is pure waste.
        if key not in self._position_cache:
            # Outside inference mode: an inference tensor here would break a later backward pass.
            with torch.inference_mode(False), torch.no_grad():
                self._position_cache[key] = make()
        return self._position_cache[key]

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        pos = self.pos_embed
        if rows == cols == self.cfg.pos_grid:
            return pos

        def make():
            grid = self.cfg.pos_grid
            patch_pos = pos[:, 1:].float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
            offset = self.cfg.interpolate_offset
            if offset is not None:
                scale = ((rows + offset) / grid, (cols + offset) / grid)
                patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic", antialias=False)
            else:
                patch_pos = F.interpolate(patch_pos, size=(rows, cols), mode="bicubic", align_corners=False)
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
            return torch.cat((pos[:, :1].float(), patch_pos), dim=1).to(pos.dtype)

        return self._cached(("pos", rows, cols, pos.device, pos.dtype), make)

    def forward(self, pixels: torch.Tensor, final_norm: bool = True) -> torch.Tensor:
        b, _, h, w = pixels.shape
        rows, cols = h // self.cfg.patch, w // self.cfg.patch
        x = self.patch_embed(pixels)
        cls = self.cls_token.expand(b, -1, -1)
        rope = None
        if self.cfg.rope:
            prefix = [cls] + ([self.storage_tokens.expand(b, -1, -1)] if self.cfg.registers else [])
            x = torch.cat(prefix + [x], dim=1)
            key = ("rope", rows, cols, self.rope_embed.periods.device)
            rope = self._cached(key, lambda: self.rope_embed(rows, cols))
        else:
            x = torch.cat([cls, x], dim=1) + self.position_embedding(rows, cols)
            if self.cfg.registers:
                x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            if self.checkpointing and torch.is_grad_enabled() and x.requires_grad:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        return self.norm(x) if final_norm else x

    def _apply(self, fn, recurse=True):
        self._position_cache = {}
        return super()._apply(fn, recurse)


def prepare_meta_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop training-only tensors from a Meta checkpoint."""
    return {k: v for k, v in state.items() if k not in TRAINING_ONLY_KEYS}


_HF_RULES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.register_tokens", "register_tokens"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1", r"blocks.\1.ls\2.gamma"),
    (r"encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]
_HF_QKV = re.compile(
    r"encoder\.layer\.(\d+)\.attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)"
)


def hf_to_meta(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``Dinov2Model`` state dict to Meta's names, fusing q, k, v."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        key = key.removeprefix("dinov2.")
        if key == "embeddings.mask_token":
            continue
        if m := _HF_QKV.fullmatch(key):
            part = {"query": "q", "key": "k", "value": "v"}.get(m.group(2) or "", m.group(3))
            qkv.setdefault((m.group(1), m.group(4)), {})[part] = value
            continue
        for pattern, replacement in _HF_RULES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
        else:
            raise WeightsError(f"{path}: unexpected key '{key}' for a Hugging Face DINOv2 model")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"{path}: layer {layer} {kind} has only {sorted(parts)} of q, k, v")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def read_hf_dino(folder: Path, hint: str) -> tuple[dict[str, torch.Tensor], Path, dict]:
    """A Hugging Face DINOv2 folder as (state in Meta's names, file, sizes from config.json)."""
    config = read_json(folder / "config.json", hint)
    path = folder / "model.safetensors"
    state = hf_to_meta(read_safetensors(path, hint), path)
    return state, path, {"heads": config.get("num_attention_heads"), "eps": config.get("layer_norm_eps")}
