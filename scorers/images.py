"""Turning user input into a checked RGB batch in [0, 1].

Channel handling follows PIL's ``Image.convert("RGB")``, which is what the official
scorers apply to every file they open: a single grey channel is repeated three times and
an alpha channel is dropped (not composited), so a tensor and the same picture read from
disk give the same embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from .errors import ImageInputError

ImageBatch = Union[torch.Tensor, Sequence[torch.Tensor]]

# Values this far outside [0, 1] are float noise from an upstream op, not a wrong range.
RANGE_TOLERANCE = 1e-4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def to_rgb(images: torch.Tensor, what: str = "images", device: torch.device | None = None) -> torch.Tensor:
    """Check one ``[B,C,H,W]`` float tensor (on ``device``, if given) and return it with three channels."""
    if not isinstance(images, torch.Tensor):
        raise ImageInputError(f"{what}: expected a torch.Tensor [B,3,H,W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ImageInputError(
            f"{what}: expected a 4-d tensor [B,C,H,W], got shape {tuple(images.shape)}"
            + (" (add a batch dimension with .unsqueeze(0))" if images.dim() == 3 else "")
        )
    if not images.is_floating_point():
        raise ImageInputError(
            f"{what}: expected a float tensor with values in [0, 1], got dtype {images.dtype} "
            "(for 8-bit images divide by 255 first)"
        )
    b, c, h, w = images.shape
    if b == 0:
        raise ImageInputError(f"{what}: the batch is empty (shape {tuple(images.shape)})")
    if h == 0 or w == 0:
        raise ImageInputError(f"{what}: images have zero size (shape {tuple(images.shape)})")
    if c not in (1, 2, 3, 4):
        raise ImageInputError(
            f"{what}: expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels in dim 1, got {c} "
            f"(shape {tuple(images.shape)}; channels-last images need .permute(0, 3, 1, 2))"
        )
    if device is not None and images.device != device:
        raise ImageInputError(f"{what} are on {images.device} but the scorer is on {device}; use .to('{device}')")
    values = images.detach()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ImageInputError(f"{what}: {bad} value(s) are NaN or infinite")
    lo, hi = float(values.min()), float(values.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ImageInputError(
            f"{what}: values must lie in [0, 1], found min {lo:.4g} and max {hi:.4g} "
            "(images in [-1, 1] need (x + 1) / 2; 8-bit images need x / 255)"
        )
    if c in (1, 2):
        images = images[:, :1].expand(b, 3, h, w)
    elif c == 4:
        images = images[:, :3]
    return images


def as_batch(images: ImageBatch, what: str = "images", device: torch.device | None = None) -> list[torch.Tensor]:
    """Accept one ``[B,C,H,W]`` tensor or a list of ``[C,H,W]`` / ``[1,C,H,W]`` tensors of any sizes.

    Returns a list of checked RGB ``[b,3,H,W]`` chunks, each of one size, in input order.
    """
    if isinstance(images, torch.Tensor):
        return [to_rgb(images, what, device)]
    if not isinstance(images, (list, tuple)):
        raise ImageInputError(f"{what}: expected a tensor or a list of tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise ImageInputError(f"{what}: the list of images is empty")
    chunks = []
    for i, image in enumerate(images):
        if isinstance(image, torch.Tensor) and image.dim() == 3:
            image = image.unsqueeze(0)
        chunks.append(to_rgb(image, f"{what}[{i}]", device))
    return chunks


SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise ImageInputError(f"image file not found: {path}") from None
    except Image.DecompressionBombError as error:
        raise ImageInputError(f"{path}: {error} If you trust this file, raise PIL.Image.MAX_IMAGE_PIXELS.") from None
    except (OSError, ValueError) as error:
        raise ImageInputError(f"cannot read image {path}: {error}") from None


def check_image(path: Union[str, Path]) -> None:
    """Open ``path`` far enough to know it is an image we can decode (header only: cheap)."""
    with _open(Path(path)):
        pass


def load_image(path: Union[str, Path]) -> torch.Tensor:
    """Read an image file as a ``[3,H,W]`` float tensor in [0, 1].

    8-bit modes go through PIL's ``convert("RGB")`` (grey repeated, alpha dropped, palette, CMYK,
    YCbCr, LAB and HSV converted), as the official pipelines read files. PIL would clip 16-bit and
    float images to 0…255 (a 16-bit grey PNG comes out white, a float TIFF black), so those are
    scaled here: 16-bit integers by 1/65535, floats taken as they are when they lie in [0, 1];
    anything else is refused rather than guessed.
    """
    path = Path(path)
    with _open(path) as image:
        try:
            if image.mode in SIXTEEN_BIT or image.mode == "F":
                return _grey_to_tensor(np.asarray(image), image.mode, path)
            rgb = image.convert("RGB")
        except (OSError, ValueError) as error:
            raise ImageInputError(f"cannot decode image {path} (mode {image.mode}): {error}") from None
    return pil_to_tensor(rgb)


def _grey_to_tensor(array: np.ndarray, mode: str, path: Path) -> torch.Tensor:
    values = array.astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F":
        if not np.isfinite(values).all() or low < 0 or high > 1:
            raise ImageInputError(f"{path}: a floating-point image must hold values in [0, 1], found "
                                  f"[{low:.4g}, {high:.4g}]; convert it to 8- or 16-bit first")
        grey = values
    else:
        if low < 0 or high > 65535:
            raise ImageInputError(f"{path}: a {mode} integer image must hold 16-bit values (0…65535), found "
                                  f"[{low:.0f}, {high:.0f}]; convert it to 8- or 16-bit first")
        grey = values / 65535.0
    return torch.from_numpy(grey).float()[None].expand(3, -1, -1).contiguous()


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as ``[3,H,W]`` float32 in [0, 1], like torchvision's ``ToTensor``."""
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def list_images(folder: Union[str, Path]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageInputError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
