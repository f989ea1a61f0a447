"""CLIP-I: cosine of CLIP ViT-L/14 image embeddings (``get_image_features``), as DreamBench++."""

from __future__ import annotations

import torch

from .base import Scorer
from .embedding import Embedding
from .hf import config_from, load_tower, unit, vision_config
from .preprocess import CLIP_MEAN, CLIP_STD, Preprocess
from .weights import HubFiles, PathLike, resolve_folder

CLIP_L14 = HubFiles("openai/clip-vit-large-patch14", ("config.json", "model.safetensors"), "clip-vit-large-patch14")


class ClipScorer(Scorer):
    def __init__(self, name: str, model: torch.nn.Module, image_size: int):
        # CLIPImageProcessor: shortest edge → image_size (bicubic), centre crop, CLIP mean/std.
        super().__init__(Preprocess(image_size, image_size, CLIP_MEAN, CLIP_STD))
        self.name, self.model = name, model

    def encode(self, pixels: torch.Tensor) -> Embedding:
        return Embedding(unit(self.model(pixel_values=pixels).image_embeds))

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixels).last_hidden_state[:, 1:]  # drop the class token

    @property
    def patch_size(self) -> int:
        return self.model.config.patch_size


def load_clip(name: str, weights: PathLike | None = None) -> ClipScorer:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = resolve_folder(weights, CLIP_L14, name)
    hint = f"expected {', '.join(CLIP_L14.files)} of a CLIP model, as published at {CLIP_L14.url}"
    values, whole = vision_config(folder, hint)
    if "projection_dim" in whole:
        values["projection_dim"] = whole["projection_dim"]
    model = CLIPVisionModelWithProjection(config_from(CLIPVisionConfig, values))
    load_tower(model, folder, hint, keep=("vision_model.", "visual_projection."))
    return ClipScorer(name, model, model.config.image_size)
