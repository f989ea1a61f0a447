"""What every IDGuide node shares: the custom socket types, ComfyUI's models folder, caching."""

from __future__ import annotations

import os
from functools import lru_cache

import folder_paths
import torch
from comfy_api.latest import io

from ..scorers import Scorer, add_search_path, load_scorer

ScorerSocket = io.Custom("ID_SCORER")
ReferenceSocket = io.Custom("ID_REFERENCE")
OFFICIAL = "official (download or cache)"

MODELS = os.path.join(folder_paths.models_dir, "idguide")
if "idguide" not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path("idguide", MODELS, is_default=True)
for _path in folder_paths.get_folder_paths("idguide"):
    add_search_path(_path)  # weights=None looks in models/idguide/<official folder name> first


def weight_choices() -> list[str]:
    """Folders and files under every ``models/idguide`` path, as the dropdown shows them."""
    names = set()
    for root in folder_paths.get_folder_paths("idguide"):
        if os.path.isdir(root):
            names.update(n for n in os.listdir(root) if not n.startswith("."))
    return [OFFICIAL, *sorted(names)]


def resolve_weights(node: str, choice: str) -> str | None:
    if choice in (OFFICIAL, "", None):
        return None
    if os.path.isabs(choice) or ".." in choice.replace("\\", "/").split("/"):
        raise ValueError(f"{node}: weights '{choice}' must be a name inside models/idguide, not a path")
    for root in folder_paths.get_folder_paths("idguide"):
        candidate = os.path.realpath(os.path.join(root, choice))
        if os.path.commonpath([candidate, os.path.realpath(root)]) == os.path.realpath(root) and os.path.exists(candidate):
            return candidate
    raise ValueError(f"{node}: weights '{choice}' not found in models/idguide ({', '.join(folder_paths.get_folder_paths('idguide'))})")


@lru_cache(maxsize=4)
def cached_scorer(name: str, weights: str | None, options: tuple, dtype: str, device: str) -> Scorer:
    """The same settings never load twice. Built outside inference mode so that guidance can
    back-propagate through the weights (ComfyUI runs nodes under torch.inference_mode)."""
    with torch.inference_mode(False):
        return load_scorer(name, weights=weights, device=device, dtype=dtype, **dict(options))


def to_bchw(images: torch.Tensor, node: str, what: str = "images") -> torch.Tensor:
    """ComfyUI IMAGE ``[B,H,W,C]`` → ``[B,C,H,W]``, with a clear error for an empty batch."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{node}: '{what}' must be a non-empty IMAGE batch, got {shape}")
    return images.movedim(-1, 1).float().clamp(0, 1)
