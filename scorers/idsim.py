"""ID-Sim (Chae et al., CVPR 2026): DINO ViT + merged LoRA + MLP heads; a distance, lower = same.

Load → preprocess → embed → distance, as the official ``id_sim`` package computes them, but
with the LoRA merged at load time, the reference embeddable once, and gradients allowed.
Facts marked *unconfirmed* in ``shared/reference/scorers.md`` are the constants right below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .base import Scorer, cosine, paired
from .dino import HF_FILES, DinoConfig, DinoViT, prepare_meta_state, read_hf_dino
from .embedding import Embedding
from .errors import ParameterError, WeightsError
from .lora import merge_lora
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .weights import HubFiles, PathLike, hub_download, load_state, looks_like_path, read_pth, resolve_folder
from .weights import search_roots

IMAGE_SIZE = 448
# Unconfirmed: the DreamSim-style forward hook reads the last block's output, i.e. before the
# backbone's final LayerNorm. Flip this if the official code turns out to apply the norm.
APPLY_FINAL_NORM = False
HEAD_FILES = ("adapter_config.json", "adapter_model.safetensors", "mlp_cls.pth", "mlp_patch.pth")
DINOV3_URL = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
# The training-time patch metric (paper settings).
SINKHORN = dict(loss="sinkhorn", p=2, blur=0.05, scaling=0.05, reach=None, debias=False)

Mode = Literal["cls", "patch", "joint"]
PatchDistance = Literal["pooled", "sinkhorn"]


@dataclass(frozen=True)
class Variant:
    """One released ID-Sim model (``id_sim_type``) and where its backbone comes from."""

    id_sim_type: str
    backbone_file: str  # Meta's file name, under <cache>/checkpoints/
    rope: bool  # DINOv3 (RoPE, 4 registers) vs DINOv2 (learned positions)
    patch: int
    hf_backbone: str | None = None  # the same weights in Hugging Face format (public DINOv2 only)

    @property
    def heads(self) -> HubFiles:
        return HubFiles(f"chaenayo/id-sim_{self.id_sim_type}", HEAD_FILES, f"id_sim_checkpoint/{self.id_sim_type}")

    def backbone_hint(self) -> str:
        roots = ", ".join(str(r / "id_sim_checkpoint" / "checkpoints") for r in search_roots())
        if self.hf_backbone is None:
            return (
                f"DINOv3 weights are gated by Meta: request access at {DINOV3_URL}, download "
                f"'{self.backbone_file}' by hand and put it in <weights>/checkpoints/ (next to the "
                f"'{self.id_sim_type}' folder) or one of: {roots}; or pass backbone='path/to/file.pth'"
            )
        return (
            f"put Meta's '{self.backbone_file}' (https://dl.fbaipublicfiles.com/dinov2/) in "
            f"<weights>/checkpoints/ or one of: {roots}; or pass backbone= a .pth file or a Hugging Face "
            f"folder/repo (default https://huggingface.co/{self.hf_backbone})"
        )


VARIANTS = {
    v.id_sim_type: v
    for v in (
        Variant("dinov3_vitl16_cls_patch", "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth", True, 16),
        Variant("dinov3_vitb16_cls_patch", "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth", True, 16),
        Variant("dinov2_vitl14_cls_patch", "dinov2_vitl14_pretrain.pth", False, 14, "facebook/dinov2-large"),
        Variant("dinov2_vitb14_cls_patch", "dinov2_vitb14_pretrain.pth", False, 14, "facebook/dinov2-base"),
    )
}


class IdSimHead(nn.Module):
    """``fc2(SiLU(fc1(LayerNorm(x)))) + sigmoid(beta_logit) * x`` (keys as in mlp_cls.pth)."""

    def __init__(self, dim: int, hidden: int, beta_shape: torch.Size):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.beta_logit = nn.Parameter(torch.full(beta_shape, -4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(self.ln(x)))) + torch.sigmoid(self.beta_logit) * x

    @staticmethod
    def load(path: Path, dim: int, hint: str) -> "IdSimHead":
        state = read_pth(path, hint)
        for key in ("fc1.weight", "beta_logit"):
            if key not in state:
                raise WeightsError(f"{path}: key '{key}' is missing: not an ID-Sim MLP head. {hint}")
        head = IdSimHead(dim, state["fc1.weight"].shape[0], state["beta_logit"].shape)
        load_state(head, state, path, f"(the backbone has width {dim}: is this head from another variant?) {hint}")
        return head


def check_options(name: str, mode: str, patch_distance: str | None) -> None:
    """``patch_distance=None``: not chosen (pooled). Chosen with mode ``cls`` it would do nothing, so it is refused."""
    if mode not in ("cls", "patch", "joint"):
        raise ValueError(f"{name}: mode must be 'cls', 'patch' or 'joint', got {mode!r}")
    if patch_distance is not None and patch_distance not in ("pooled", "sinkhorn"):
        raise ValueError(f"{name}: patch_distance must be 'pooled' or 'sinkhorn', got {patch_distance!r}")
    if patch_distance is not None and mode == "cls":
        raise ParameterError("patch_distance", f"{patch_distance!r} has no effect in {name}'s mode 'cls' (only modes "
                                               "'patch' and 'joint' compare patch tokens): leave it unset or choose "
                                               "one of those modes")


def normalize_embedding(e: torch.Tensor) -> torch.Tensor:
    """Centre each embedding over its features, then scale to unit length (official)."""
    centred = e - e.mean(dim=-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True)


class IdSimScorer(Scorer):
    """ID-Sim. ``distance`` is the official ID-Sim distance; ``similarity = 1 - distance``.

    ``mode``: ``cls`` (the paper's metric, default), ``patch`` or ``joint`` (cls + patch; what
    the official ``model(a, b)`` returns with no mode). ``patch_distance`` (patch and joint modes
    only): ``pooled`` (mean patch token, cosine; official inference default, what ``None`` means)
    or ``sinkhorn`` (geomloss, paper settings).
    """

    def __init__(
        self,
        name: str,
        backbone: DinoViT,
        mlp_cls: IdSimHead,
        mlp_patch: IdSimHead,
        mode: Mode = "cls",
        patch_distance: PatchDistance | None = None,
    ):
        super().__init__(Preprocess((IMAGE_SIZE, IMAGE_SIZE), None, IMAGENET_MEAN, IMAGENET_STD))
        check_options(name, mode, patch_distance)
        self.name = name
        self.backbone, self.mlp_cls, self.mlp_patch = backbone, mlp_cls, mlp_patch
        self.mode, self.patch_distance = mode, patch_distance or "pooled"

    def encode(self, pixels: torch.Tensor) -> Embedding:
        tokens = self.backbone(pixels, final_norm=APPLY_FINAL_NORM)
        cls = normalize_embedding(self.mlp_cls(tokens[:, 0]).float())
        if self.mode == "cls":
            return Embedding(cls)
        grid = (pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size)
        patches = normalize_embedding(self.mlp_patch(tokens[:, self.backbone.num_prefix_tokens :]).float())
        return Embedding(cls, patches, grid)

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(pixels, final_norm=APPLY_FINAL_NORM)
        return normalize_embedding(self.mlp_patch(tokens[:, self.backbone.num_prefix_tokens :]).float())

    @property
    def patch_size(self) -> int:
        return self.backbone.cfg.patch

    # --- distances (lower = more alike) ---------------------------------------------------
    @property
    def tag(self) -> str:
        return f"{self.name} (mode={self.mode})"

    def distance(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return self._distance(*paired(self.check(a, "a"), self.check(b, "b")))

    def _distance(self, a: Embedding, b: Embedding) -> torch.Tensor:
        total = 0.0
        if self.mode in ("cls", "joint"):
            total = 1.0 - cosine(a.vector, b.vector)
        if self.mode in ("patch", "joint"):
            total = total + self.patch_distance_pairs(a, b)
        return total

    def patch_distance_pairs(self, a: Embedding, b: Embedding) -> torch.Tensor:
        if a.patches is None or b.patches is None:
            raise ValueError(f"{self.name}: mode {self.mode!r} needs patch tokens; embed with this scorer's mode")
        if self.patch_distance == "pooled":
            return 1.0 - cosine(a.patches.mean(dim=1), b.patches.mean(dim=1))
        from geomloss import SamplesLoss

        pa, pb = F.normalize(a.patches, dim=-1), F.normalize(b.patches, dim=-1)
        n = max(pa.shape[0], pb.shape[0])
        pa, pb = pa.expand(n, -1, -1).contiguous(), pb.expand(n, -1, -1).contiguous()
        return SamplesLoss(**SINKHORN, backend="tensorized")(pa, pb)

    def _similarity(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return 1.0 - self._distance(a, b)

    def _similarity_matrix(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return torch.stack([self._similarity(a[i], b) for i in range(len(a))])


def load_idsim(
    id_sim_type: str,
    weights: PathLike | None = None,
    backbone: PathLike | None = None,
    mode: Mode = "cls",
    patch_distance: PatchDistance | None = None,
    name: str | None = None,
) -> IdSimScorer:
    """Build ID-Sim from the official files (see ``Variant`` and ``shared/reference``)."""
    variant = VARIANTS[id_sim_type]
    name = name or f"idsim ({id_sim_type})"
    check_options(name, mode, patch_distance)  # before any file is read
    heads_dir = locate_heads(variant, weights, name)
    hint = f"ID-Sim heads and adapter: {variant.heads.url}"
    state, path, sizes = read_backbone(variant, backbone, heads_dir, name)
    state = merge_lora(state, heads_dir / "adapter_config.json", heads_dir / "adapter_model.safetensors", hint)
    cfg = DinoConfig.from_state(state, path, **sizes)
    if cfg.rope != variant.rope or cfg.patch != variant.patch:
        family = "DINOv3" if cfg.rope else "DINOv2"
        raise WeightsError(
            f"{path} is a {family} ViT with patch {cfg.patch}, but {name} needs "
            f"{'DINOv3' if variant.rope else 'DINOv2'} with patch {variant.patch}. {variant.backbone_hint()}"
        )
    vit = DinoViT(cfg)
    load_state(vit, prepare_meta_state(state), path, variant.backbone_hint())
    mlp_cls = IdSimHead.load(heads_dir / "mlp_cls.pth", cfg.dim, hint)
    mlp_patch = IdSimHead.load(heads_dir / "mlp_patch.pth", cfg.dim, hint)
    return IdSimScorer(name, vit, mlp_cls, mlp_patch, mode, patch_distance)


def locate_heads(variant: Variant, weights: PathLike | None, what: str) -> Path:
    """The folder with the adapter and heads: ``weights`` may be the official cache root
    (holding ``<id_sim_type>/`` and ``checkpoints/``), the variant folder itself, or a repo id."""
    if weights is not None and looks_like_path(weights):
        folder = Path(weights).expanduser()
        if (folder / variant.id_sim_type).is_dir():
            weights = folder / variant.id_sim_type
    return resolve_folder(weights, variant.heads, what)


def read_backbone(variant: Variant, backbone: PathLike | None, heads_dir: Path, what: str):
    """The backbone state dict in Meta's names, the file it came from, and the sizes a Hugging
    Face folder states in config.json rather than in tensor shapes."""
    hint = variant.backbone_hint()
    if backbone is None:
        candidates = [heads_dir.parent / "checkpoints", heads_dir / "checkpoints"]
        candidates += [root / "id_sim_checkpoint" / "checkpoints" for root in search_roots()]
        for folder in candidates:
            if (folder / variant.backbone_file).is_file():
                path = folder / variant.backbone_file
                return read_pth(path, hint), path, {}
        if variant.hf_backbone is None:
            raise WeightsError(f"{what}: backbone '{variant.backbone_file}' not found. {hint}")
        backbone_dir = hub_download(HubFiles(variant.hf_backbone, HF_FILES, variant.hf_backbone), what)
        return read_hf_dino(backbone_dir, hint)
    if looks_like_path(backbone):
        path = Path(backbone).expanduser()
        if path.is_dir():
            return read_hf_dino(path, hint)
        if path.suffix == ".safetensors":
            return read_hf_dino(path.parent, hint)
        return read_pth(path, hint), path, {}
    return read_hf_dino(hub_download(HubFiles(str(backbone), HF_FILES, str(backbone)), what), hint)
