"""The tensor preprocessing path against the official PIL-based pipelines, on real photographs."""

import numpy as np
import pytest
import torch
from PIL import Image

from idguide.scorers.preprocess import CLIP_MEAN, CLIP_STD, HALF, IMAGENET_MEAN, IMAGENET_STD, Preprocess

from conftest import EXAMPLES

PHOTOS = [EXAMPLES / "reference.jpg", *sorted(EXAMPLES.glob("candidates/*.jpg"))]


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def pil_square(image, size):
    """ID-Sim / SigLIP: torchvision Resize((s, s), BICUBIC) on a PIL image = PIL resize."""
    return to_tensor(image.resize((size, size), Image.BICUBIC))


def pil_shortest_then_crop(image, short, crop):
    """HF CLIPImageProcessor / BitImageProcessor (PIL backend): shortest edge, then centre crop."""
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    resized = image.resize(size, Image.BICUBIC)
    left, top = (resized.width - crop) // 2, (resized.height - crop) // 2
    return to_tensor(resized.crop((left, top, left + crop, top + crop)))


CASES = {
    "idsim-448": (Preprocess((448, 448), None, IMAGENET_MEAN, IMAGENET_STD), lambda im: pil_square(im, 448)),
    "siglip-384": (Preprocess((384, 384), None, HALF, HALF), lambda im: pil_square(im, 384)),
    "clip-224": (Preprocess(224, 224, CLIP_MEAN, CLIP_STD), lambda im: pil_shortest_then_crop(im, 224, 224)),
    "dinov2-256-224": (
        Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD),
        lambda im: pil_shortest_then_crop(im, 256, 224),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_tensor_path_agrees_with_pil(case, capsys):
    preprocess, official = CASES[case]
    mean = torch.tensor(preprocess.mean).view(3, 1, 1)
    std = torch.tensor(preprocess.std).view(3, 1, 1)
    diffs = []
    for path in PHOTOS:
        image = Image.open(path).convert("RGB")
        ours = preprocess(to_tensor(image)[None])[0] * std + mean  # back to [0, 1] to compare pixels
        theirs = official(image)
        assert ours.shape == theirs.shape
        diffs.append((ours - theirs).abs().mean().item())
        assert (ours - theirs).abs().max().item() < 0.1, path.name
    with capsys.disabled():
        print(f"\n[{case}] mean |tensor - PIL| over {len(PHOTOS)} photos: {np.mean(diffs) * 255:.3f}/255 "
              f"(worst photo {max(diffs) * 255:.3f}/255)")
    # PIL rounds to 8 bits after resizing (≤ 0.5/255) and its bicubic kernel uses fixed-point
    # weights; anything beyond ~1/255 on average would mean a different resize.
    assert np.mean(diffs) < 1.0 / 255


def test_resize_is_skipped_at_target_size():
    x = torch.rand(1, 3, 448, 448)
    out = Preprocess((448, 448), None, (0.0,) * 3, (1.0,) * 3)(x)
    assert torch.equal(out, x)


def test_shortest_edge_sizes_follow_hf_rule():
    p = Preprocess(224, 224, CLIP_MEAN, CLIP_STD)
    assert p.resized_size(300, 451) == (224, 336)
    assert p.resized_size(451, 300) == (336, 224)
    assert p.output_size(300, 451) == (224, 224)
