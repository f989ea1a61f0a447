"""NearID and the frozen SigLIP2 SO400M baselines: one SigLIP vision tower, two readouts.

NearID (``Aleksandar/nearid-siglip2``) is SigLIP2 with a retrained attention-pooling (MAP)
head: its embedding is the tower's ``pooler_output``, L2-normalised. The NearID paper's
DreamBench++ baseline ``siglip2`` mean-pools the frozen tower's tokens instead (its
``data_backbone_rating``); ``siglip2-map`` uses SigLIP2's own MAP head.
"""

from __future__ import annotations

from typing import Literal

import torch

from .base import Scorer
from .embedding import Embedding
from .hf import config_from, load_tower, unit, vision_config
from .preprocess import HALF, Preprocess
from .errors import WeightsError
from .weights import HubFiles, PathLike, resolve_folder

FILES = ("config.json", "model.safetensors")
NEARID = HubFiles("Aleksandar/nearid-siglip2", FILES, "nearid-siglip2")
SIGLIP2 = HubFiles("google/siglip2-so400m-patch14-384", FILES, "siglip2-so400m-patch14-384")

Readout = Literal["map", "mean"]


class SiglipScorer(Scorer):
    """Cosine of L2-normalised SigLIP embeddings (``map``: MAP head; ``mean``: token mean)."""

    def __init__(self, name: str, model: torch.nn.Module, image_size: int, readout: Readout):
        super().__init__(Preprocess((image_size, image_size), None, HALF, HALF))
        self.name, self.model, self.readout = name, model, readout

    def encode(self, pixels: torch.Tensor) -> Embedding:
        out = self.model(pixel_values=pixels)
        vector = out.pooler_output if self.readout == "map" else out.last_hidden_state.mean(dim=1)
        return Embedding(unit(vector))

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).last_hidden_state  # SigLIP has no class token

    @property
    def patch_size(self) -> int:
        return self.model.config.patch_size


def load_siglip(name: str, hub: HubFiles, readout: Readout, weights: PathLike | None = None) -> SiglipScorer:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    folder = resolve_folder(weights, hub, name)
    hint = f"expected {', '.join(hub.files)} as published at {hub.url}"
    values, whole = vision_config(folder, hint)
    nearid = whole.get("model_type") == "nearid"
    if nearid != (hub is NEARID):
        kind = "NearID" if nearid else f"{whole.get('model_type')!r}"
        right = "'nearid'" if nearid else "'siglip2' or 'siglip2-map'"
        raise WeightsError(f"{name}: {folder} holds {kind} weights (config.json), not {hub.repo_id}'s; "
                           f"load them as {right}")
    model = SiglipVisionModel(config_from(SiglipVisionConfig, values))
    load_tower(model, folder, hint, strip="backbone." if nearid else "")
    return SiglipScorer(name, model, model.config.image_size, readout)
