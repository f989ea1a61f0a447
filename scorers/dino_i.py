"""DINO-I: cosine of DINOv2 CLS embeddings, as DreamBench++ computes them with transformers.

``Dinov2Model.last_hidden_state[:, 0]`` (final LayerNorm applied) after ``BitImageProcessor``
(shortest edge 256 bicubic, centre crop 224, ImageNet mean/std). The position embeddings are
resized the transformers way (``size=``), unlike ID-Sim's Meta-style resize.
"""

from __future__ import annotations

import dataclasses

import torch

from .base import Scorer
from .dino import HF_FILES, DinoConfig, DinoViT, read_hf_dino
from .embedding import Embedding
from .hf import unit
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .weights import HubFiles, PathLike, load_state, resolve_folder

DINOV2_L14 = HubFiles("facebook/dinov2-large", HF_FILES, "dinov2-large")


class DinoIScorer(Scorer):
    def __init__(self, name: str, backbone: DinoViT):
        super().__init__(Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD))
        self.name, self.backbone = name, backbone

    def encode(self, pixels: torch.Tensor) -> Embedding:
        return Embedding(unit(self.backbone(pixels, final_norm=True)[:, 0]))

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixels, final_norm=True)[:, self.backbone.num_prefix_tokens :]

    @property
    def patch_size(self) -> int:
        return self.backbone.cfg.patch


def load_dino_i(name: str, weights: PathLike | None = None) -> DinoIScorer:
    folder = resolve_folder(weights, DINOV2_L14, name)
    hint = f"expected {', '.join(DINOV2_L14.files)} of a Dinov2Model, as published at {DINOV2_L14.url}"
    state, path, sizes = read_hf_dino(folder, hint)
    cfg = DinoConfig.from_state(state, path, **sizes)
    vit = DinoViT(dataclasses.replace(cfg, interpolate_offset=None))
    load_state(vit, state, path, hint)
    return DinoIScorer(name, vit)
