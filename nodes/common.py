"""What every IDGuide node shares: the custom socket types, ComfyUI's folders, and the scorer's
place in ComfyUI's memory management.

Errors are plain, specific exceptions: ComfyUI names the node that raised them."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.latest import io

from ..guidance import IdentityLoss
from ..scorers import Embedding, Scorer, add_search_path, load_scorer
from ..scorers.checks import inside
from ..scorers.weights import set_interface

ScorerSocket = io.Custom("ID_SCORER")
ReferenceSocket = io.Custom("ID_REFERENCE")
OFFICIAL = "official (download or cache)"

MODELS = os.path.join(folder_paths.models_dir, "idguide")
if "idguide" not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path("idguide", MODELS, is_default=True)
set_interface("comfyui")  # weights errors point at the models folder and the dropdown
for _path in folder_paths.get_folder_paths("idguide"):
    add_search_path(_path)  # weights=None looks in models/idguide/<official folder name> first


def weight_choices() -> list[str]:
    """Folders and files under every ``models/idguide`` path, as the dropdown shows them."""
    names = set()
    for root in folder_paths.get_folder_paths("idguide"):
        if os.path.isdir(root):
            names.update(n for n in os.listdir(root) if not n.startswith("."))
    return [OFFICIAL, *sorted(names)]


def resolve_weights(choice: str) -> str | None:
    if choice in (OFFICIAL, "", None):
        return None
    if os.path.isabs(choice) or ".." in choice.replace("\\", "/").split("/"):
        raise ValueError(f"weights '{choice}' must be a name inside models/idguide, not a path")
    for root in folder_paths.get_folder_paths("idguide"):
        candidate = inside(root, choice, "weights")
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"weights '{choice}' not found in models/idguide ({', '.join(folder_paths.get_folder_paths('idguide'))})")


class ComfyScorer:
    """An ``ID_SCORER``: a scorer that ComfyUI's model management places and frees like its own
    models (loaded on the device ComfyUI chose, offloaded when it needs the memory)."""

    def __init__(self, scorer: Scorer):
        self.patcher = patcher_for(scorer)

    @property
    def scorer(self) -> Scorer:
        return self.patcher.model.module

    def load(self) -> Scorer:
        """The scorer, on ComfyUI's device (loads it back if ComfyUI offloaded it)."""
        ensure_loaded(self.patcher)
        return self.scorer


def patcher_for(module: torch.nn.Module):
    """A ComfyUI ModelPatcher over any module (held in a container: the patcher sets ``.device``)."""
    import comfy.model_management as mm
    import comfy.model_patcher

    holder = torch.nn.Module()
    holder.module = module
    return comfy.model_patcher.ModelPatcher(holder, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def ensure_loaded(patcher) -> None:
    """Load wholly onto the load device (our modules cannot run split across devices, so never
    ComfyUI's partial low-VRAM load) unless ComfyUI already holds it there."""
    import comfy.model_management as mm

    device = torch.device(patcher.load_device)
    held = any(patcher.is_clone(m) for m in mm.loaded_models())  # itself, or a clone sampling loaded
    if not held or any(p.device != device for p in patcher.model.parameters()):
        mm.load_models_gpu([patcher], force_full_load=True)


def comfy_scorer(name: str, weights: str | None, options: dict, dtype: str) -> ComfyScorer:
    """A scorer held only by ComfyUI (its node cache and model management), so that "unload
    models" frees it. Built outside inference mode so that guidance can back-propagate through
    the weights (ComfyUI runs nodes under torch.inference_mode)."""
    import comfy.model_management as mm

    with torch.inference_mode(False):
        scorer = load_scorer(name, weights=weights, device=mm.unet_offload_device(), dtype=dtype, **options)
    return ComfyScorer(scorer)


class ComfyReference(IdentityLoss):
    """An ``ID_REFERENCE``: the identity loss (references embedded once) plus what the other
    nodes need: the scorer's ComfyUI handle and the reference pixels (for similarity maps)."""

    def __init__(self, handle: ComfyScorer, pixels: torch.Tensor, reference_mode: str):
        with torch.inference_mode(False):
            super().__init__(handle.load(), pixels.clone(), reference_mode)
        self.handle, self.pixels = handle, pixels.cpu()


def to_bchw(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """ComfyUI IMAGE ``[B,H,W,C]`` → ``[B,C,H,W]``, with a clear error for an empty batch."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"'{what}' must be a non-empty IMAGE batch, got {shape}")
    return images.movedim(-1, 1).float().clamp(0, 1)


def embed_all(handle: ComfyScorer, pixels: torch.Tensor, batch_size: int = 8, progress: bool = True) -> Embedding:
    """Embed ``[B,3,H,W]`` in batches: cancellable from the UI, with a progress bar."""
    import comfy.model_management as mm
    import comfy.utils

    bar = comfy.utils.ProgressBar(pixels.shape[0]) if progress else None

    def advance(count: int) -> None:
        if bar is not None:
            bar.update(count)
        mm.throw_exception_if_processing_interrupted()

    mm.throw_exception_if_processing_interrupted()
    return handle.load().embed_batches(pixels, batch_size, advance=advance)


# Where a sampler is: shared by the patch and the samplers.

def step_position(sigmas, sigma: float) -> int | None:
    """Index of the current sigma in the sampler's schedule (None when the sampler gives none)."""
    if sigmas is None or len(sigmas) < 2:
        return None
    return int(torch.argmin((sigmas.float().cpu() - sigma).abs()))


def is_flow_sampling(model_sampling) -> bool:
    """A rectified-flow model (SD3, Flux): ComfyUI's CONST sampling."""
    import comfy.model_sampling

    return isinstance(model_sampling, comfy.model_sampling.CONST)


def signal_at(sigma: float, flow: bool) -> float:
    """s in ComfyUI's x = s·x0 + σ·ε: 1, or 1 − σ for a flow model."""
    return 1.0 - sigma if flow else 1.0
