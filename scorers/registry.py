"""Every scorer in one table: name → (how to build it, one-line description).

Adding a built-in scorer is adding a row. Any other package adds its own with
``register_scorer(name, loader, description)`` or by declaring an entry point in the
``idguide.scorers`` group (name = scorer name, object = the loader; its docstring's first
line is the description)::

    [project.entry-points."idguide.scorers"]
    my-face-id = "my_package.scorer:load"

Registered scorers are found everywhere built-in ones are: ``available_scorers``,
``load_scorer``, the CLI, the guidance and best-of-N code and the ComfyUI scorer dropdown.
``load_scorer`` is the single entry point.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from importlib.metadata import entry_points
from dataclasses import dataclass
from functools import partial
from typing import Callable, Union

import torch

from . import checks
from .base import Scorer
from .clip import load_clip
from .dino_i import load_dino_i
from .idsim import load_idsim
from .siglip import NEARID, SIGLIP2, load_siglip
from .weights import PathLike


@dataclass(frozen=True)
class ScorerEntry:
    build: Callable[..., Scorer]
    description: str


SCORERS: dict[str, ScorerEntry] = {
    "nearid": ScorerEntry(
        partial(load_siglip, "nearid", NEARID, "map"),
        "NearID: SigLIP2 SO400M + retrained MAP head, 1152-d, cosine (Aleksandar/nearid-siglip2)",
    ),
    "idsim-dinov3-vitl16": ScorerEntry(
        partial(load_idsim, "dinov3_vitl16_cls_patch", name="idsim-dinov3-vitl16"),
        "ID-Sim, DINOv3 ViT-L/16 (the paper's default; gated backbone), similarity = 1 - distance",
    ),
    "idsim-dinov3-vitb16": ScorerEntry(
        partial(load_idsim, "dinov3_vitb16_cls_patch", name="idsim-dinov3-vitb16"),
        "ID-Sim, DINOv3 ViT-B/16 (gated backbone), similarity = 1 - distance",
    ),
    "idsim-dinov2-vitl14": ScorerEntry(
        partial(load_idsim, "dinov2_vitl14_cls_patch", name="idsim-dinov2-vitl14"),
        "ID-Sim, DINOv2 ViT-L/14 (public backbone), similarity = 1 - distance",
    ),
    "idsim-dinov2-vitb14": ScorerEntry(
        partial(load_idsim, "dinov2_vitb14_cls_patch", name="idsim-dinov2-vitb14"),
        "ID-Sim, DINOv2 ViT-B/14 (public backbone), similarity = 1 - distance",
    ),
    "clip-i": ScorerEntry(
        partial(load_clip, "clip-i"), "CLIP-I: CLIP ViT-L/14 image embedding, cosine (DreamBench++ baseline)"
    ),
    "dino-i": ScorerEntry(
        partial(load_dino_i, "dino-i"), "DINO-I: DINOv2 ViT-L/14 CLS, cosine (DreamBench++ baseline)"
    ),
    "siglip2": ScorerEntry(
        partial(load_siglip, "siglip2", SIGLIP2, "mean"),
        "SigLIP2 SO400M frozen, mean-pooled tokens, cosine (NearID paper's DreamBench++ baseline)",
    ),
    "siglip2-map": ScorerEntry(
        partial(load_siglip, "siglip2-map", SIGLIP2, "map"),
        "SigLIP2 SO400M frozen, its own MAP head, cosine",
    ),
}
ALIASES = {"idsim": "idsim-dinov3-vitl16"}
BUILT_IN = frozenset([*SCORERS, *ALIASES])
ENTRY_POINT_GROUP = "idguide.scorers"
_entry_points_read = False


def register_scorer(name: str, loader: Callable[..., Scorer], description: str, replace: bool = False) -> None:
    """Add a scorer: ``loader(weights=None, **options) -> Scorer`` builds it on the CPU in fp32
    (``load_scorer`` then freezes it and moves it to the device and precision asked for).

    Names are lower-case without spaces; a built-in name cannot be taken, and a registered one
    only with ``replace=True``.
    """
    if not isinstance(name, str) or not name or name != name.strip().lower() or any(c.isspace() for c in name):
        raise ValueError(f"scorer name must be a non-empty lower-case string without spaces, got {name!r}")
    if name in BUILT_IN:
        raise ValueError(f"{name!r} is a built-in scorer; register yours under another name")
    if name in SCORERS and not replace:
        raise ValueError(f"a scorer named {name!r} is already registered; pass replace=True to replace it")
    if not callable(loader):
        raise TypeError(f"register_scorer({name!r}): loader must be callable, got {type(loader).__name__}")
    parameters = inspect.signature(loader).parameters
    if "weights" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise TypeError(f"register_scorer({name!r}): loader must accept a 'weights' keyword (None = its default)")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"register_scorer({name!r}): give a one-line description")
    SCORERS[name] = ScorerEntry(loader, description.strip().splitlines()[0])


def read_entry_points() -> None:
    """Register the scorers installed packages declare (once; a broken one is a warning, not a crash)."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in SCORERS:
            continue
        try:
            loader = point.load()
            doc = (inspect.getdoc(loader) or "").strip()
            register_scorer(point.name, loader, doc.splitlines()[0] if doc else f"from {point.value}")
        except Exception as error:  # a third-party package must not break idguide
            warnings.warn(f"idguide: scorer entry point {point.name!r} ({point.value}) skipped: {error}",
                          RuntimeWarning, stacklevel=2)


def available_scorers() -> dict[str, str]:
    """Scorer names (aliases and registered ones included) with one-line descriptions."""
    read_entry_points()
    names = {name: entry.description for name, entry in SCORERS.items()}
    names.update({alias: f"alias of {target}" for alias, target in ALIASES.items()})
    return dict(sorted(names.items()))


def resolve_name(name: str) -> str:
    read_entry_points()
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SCORERS:
        close = difflib.get_close_matches(key, [*SCORERS, *ALIASES], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown scorer {name!r}.{hint} Available: {', '.join(available_scorers())}")
    return key


def default_batch_size(device: Union[str, torch.device]) -> int:
    """Images per forward pass when the user gives none: 8 on a GPU, 1 on the CPU (where a
    batch buys nothing and costs memory)."""
    return 8 if torch.device(device).type == "cuda" else 1


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """The device asked for, checked to exist on this machine (default: CUDA when available)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__}"
                             f"{'' if torch.version.cuda else ', a CPU-only build'}); use 'cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r}: IDGuide runs on cpu, cuda or mps")
    return resolved


DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def resolve_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of float32, float16, bfloat16; got {dtype}")
        return dtype
    if str(dtype).lower() not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[str(dtype).lower()]


def load_scorer(
    name: str,
    weights: PathLike | None = None,
    device: Union[str, torch.device, None] = None,
    dtype: Union[str, torch.dtype, None] = None,
    **options,
) -> Scorer:
    """Load a scorer by name (see ``available_scorers()``), frozen and in eval mode.

    ``weights``: a local file/folder in the official layout, a Hugging Face repo id, or
    ``None`` for the official source. ``options`` are scorer-specific (ID-Sim: ``mode``,
    ``patch_distance``, ``backbone``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a scorer name (a str; see available_scorers()), got {checks.given(name)}")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be a path, a Hugging Face repo id or None (the official weights), got "
                        f"{checks.given(weights)}")
    if weights is not None and not str(weights).strip():
        raise ValueError("weights: an empty path; pass None for the official weights")
    key = resolve_name(name)
    entry = SCORERS[key]
    parameters = inspect.signature(entry.build).parameters
    accepted = set(parameters) - {"weights", "name"}
    accepted -= {p.name for p in parameters.values() if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = [] if open_ended else sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"scorer {key!r} has no option {', '.join(map(repr, unknown))}"
            + (f"; it accepts {', '.join(sorted(accepted))}" if accepted else "; it takes no options")
        )
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    scorer = entry.build(weights=weights, **options)
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer {key!r}: its loader returned {type(scorer).__name__}, not an idguide Scorer")
    scorer.requires_grad_(False)
    scorer.weights_id = weights_identity(weights)
    return scorer.to(device=device, dtype=dtype).eval()


def weights_identity(weights: PathLike | None) -> str:
    """Which weights, as a record (rating files say what produced them): a resolved local path,
    a Hugging Face repo id, or ``official``."""
    from pathlib import Path

    from .weights import looks_like_path

    if weights is None:
        return "official"
    return str(Path(weights).expanduser().resolve()) if looks_like_path(weights) else str(weights)
