import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Nothing in the tests may reach the network or the user's caches.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import checkpoints  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("IDGUIDE_HOME", str(home / "idguide"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))


@pytest.fixture(scope="session")
def weights_root(tmp_path_factory) -> Path:
    """Every tiny checkpoint, written once per session."""
    root = tmp_path_factory.mktemp("weights")
    for id_sim_type in checkpoints.DINO_FILES:
        checkpoints.write_idsim(root / "id_sim_checkpoint", id_sim_type)
    checkpoints.write_nearid(root / "nearid-siglip2")
    checkpoints.write_siglip2(root / "siglip2-so400m-patch14-384")
    checkpoints.write_clip(root / "clip-vit-large-patch14")
    checkpoints.write_dinov2_hf(root / "dinov2-large")
    return root


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="session")
def photos() -> list[torch.Tensor]:
    """The shipped example photographs as [3,H,W] tensors (varied sizes)."""
    from idguide import load_image

    return [load_image(EXAMPLES / "reference.jpg")] + [load_image(p) for p in sorted(EXAMPLES.glob("candidates/*.jpg"))]


@pytest.fixture()
def batch(photos) -> torch.Tensor:
    """Four real photographs resized to one size: a [4,3,96,128] batch in [0, 1]."""
    import torch.nn.functional as F

    return torch.cat([F.interpolate(p[None], size=(96, 128), mode="area") for p in photos[:4]])


def rng_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g)


@pytest.fixture()
def np_rng():
    return np.random.default_rng(0)


# Every scorer, loaded once per session from the tiny official-layout checkpoints.
ALL = ["nearid", "idsim-dinov3-vitl16", "idsim-dinov2-vitb14", "clip-i", "dino-i", "siglip2", "siglip2-map"]
FOLDER = {
    "nearid": "nearid-siglip2",
    "idsim-dinov3-vitl16": "id_sim_checkpoint",
    "idsim-dinov2-vitb14": "id_sim_checkpoint",
    "clip-i": "clip-vit-large-patch14",
    "dino-i": "dinov2-large",
    "siglip2": "siglip2-so400m-patch14-384",
    "siglip2-map": "siglip2-so400m-patch14-384",
}
_cache = {}


def scorer_for(name, weights_root, **options):
    import idguide

    key = (name, tuple(sorted(options.items())))
    if key not in _cache:
        _cache[key] = idguide.load_scorer(name, weights=weights_root / FOLDER[name], **options)
    return _cache[key]


# Shared by the diffusers guidance and decoder tests: the NearID scorer, the example photo, each test pipeline family.
@pytest.fixture(scope="module")
def scorer(weights_root):
    import idguide

    return idguide.load_scorer("nearid", weights=weights_root / "nearid-siglip2")


@pytest.fixture(scope="module")
def reference():
    import idguide

    return idguide.load_image(EXAMPLES / "reference.jpg")[None]


def _families():
    try:
        from pipelines import FAMILIES
    except ImportError:  # no diffusers: the tests that use this fixture skip themselves
        return []
    return list(FAMILIES)


@pytest.fixture(scope="module", params=_families())
def family(request, tmp_path_factory):
    from pipelines import FAMILIES

    return request.param, FAMILIES[request.param](tmp_path_factory.mktemp(request.param))
