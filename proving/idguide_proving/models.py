"""The proving ground's trained judges and scorers, and the pixel world's generator.

- ``GuideNet`` (guide scorer, steers): a plain strided CNN, features flattened → 128-d.
- ``JudgeNet`` (held-out judge, never steers): residual CNN with global average pooling → 96-d.
- ``OracleNet`` (ground truth of identity): VGG-style CNN with max-pooling → K-way logits.
- ``SceneOracleNet`` (ground truth of the scene): small CNN → background kind (3) and side (2)
  logits; position-sensitive (no global pooling), trained without flips.
- ``generator_unet``: diffusers ``UNet2DModel`` conditioned on the category (class embedding,
  index ``NUM_CATEGORIES`` = no condition, for classifier-free guidance), working on the
  image after a 2×2 space-to-depth (pixels rearranged, nothing learned), so a 32×32 RGB
  image is a 16×16×12 tensor: diffusion is still on pixels.

The latent world's autoencoders and denoiser are in ``latent``. Weights live in
``idguide_proving/weights/*.safetensors`` (``train.py`` reproduces them).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from idguide.scorers.base import Scorer
from idguide.scorers.embedding import Embedding
from idguide.scorers.errors import WeightsError
from idguide.scorers.preprocess import HALF, Preprocess
from idguide.scorers.weights import load_state as load_weights

from .world import BACKGROUNDS, NUM_CATEGORIES, NUM_IDENTITIES, SIDES, SIZE

WEIGHTS = Path(__file__).resolve().parent / "weights"
FILES = {"guide": "guide.safetensors", "judge": "judge.safetensors", "oracle": "oracle.safetensors",
         "generator": "generator.safetensors", "scene_oracle": "scene_oracle.safetensors",
         "autoencoder": "autoencoder.safetensors", "tiny_autoencoder": "tiny_autoencoder.safetensors",
         "latent_generator": "latent_generator.safetensors"}
PREPROCESS = Preprocess((SIZE, SIZE), None, HALF, HALF)  # images → [-1, 1] at the world's size


class GuideNet(nn.Module):
    def __init__(self, dim: int = 128):
        super().__init__()
        widths = (3, 32, 64, 96, 128)
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128 * (SIZE // 8) ** 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class _Residual(nn.Module):
    def __init__(self, a: int, b: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(a, b, 3, stride=stride, padding=1)
        self.norm1 = nn.GroupNorm(8, b)
        self.conv2 = nn.Conv2d(b, b, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, b)
        self.skip = nn.Conv2d(a, b, 1, stride=stride) if (a != b or stride != 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.skip(x))


class JudgeNet(nn.Module):
    def __init__(self, dim: int = 96):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.blocks = nn.Sequential(_Residual(32, 48, 2), _Residual(48, 64, 2), _Residual(64, 96, 1))
        self.head = nn.Linear(96, dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 96-d features: the space of the Fréchet distance."""
        return self.blocks(F.silu(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class OracleNet(nn.Module):
    def __init__(self, classes: int = NUM_IDENTITIES):
        super().__init__()

        def conv(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]

        self.features = nn.Sequential(
            *conv(3, 32), nn.MaxPool2d(2),
            *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
            *conv(64, 128), *conv(128, 128), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128 * (SIZE // 8) ** 2, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SceneOracleNet(nn.Module):
    """Background kind and side logits ``[B, 3 + 2]`` (flattened features: it sees where things are)."""

    def __init__(self):
        super().__init__()

        def conv(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]

        self.features = nn.Sequential(*conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), nn.MaxPool2d(2),
                                      *conv(64, 64), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * (SIZE // 8) ** 2, 64), nn.ReLU(),
                                        nn.Linear(64, len(BACKGROUNDS) + len(SIDES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def generator_unet(cls=None):
    """The generator's ``UNet2DModel`` (or subclass ``cls``) on the 16×16×12 space-to-depth view."""
    from idguide.scorers.optional import require

    cls = cls or require("diffusers", "the proving ground's generator").UNet2DModel
    return cls(
        sample_size=SIZE // 2, in_channels=12, out_channels=12, block_out_channels=(64, 128, 128),
        layers_per_block=1, down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
        num_class_embeds=NUM_CATEGORIES + 1, norm_num_groups=16,
    )


# --- loading -------------------------------------------------------------------------------
def weights_file(kind: str, weights=None) -> Path:
    """The safetensors file of ``kind``: the shipped one, ``weights`` itself, or ``weights/<file>``."""
    name = FILES[kind]
    path = WEIGHTS / name if weights is None else Path(weights)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise WeightsError(f"proving ground {kind}: {path} not found; expected {name} "
                           f"(shipped in {WEIGHTS}; 'python -m idguide_proving.train' writes it)")
    return path


def read_metadata(kind: str, weights=None) -> dict[str, str]:
    """The safetensors header's metadata of ``kind`` (the autoencoder keeps its scaling factor there)."""
    from safetensors import safe_open

    path = weights_file(kind, weights)
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except Exception as error:  # safetensors raises several types for a broken file
        raise WeightsError(f"proving ground {kind}: cannot read {path}: {error}") from None


def load_state(module: nn.Module, kind: str, weights=None) -> nn.Module:
    """``module`` with the proving ground's ``kind`` weights (IDGuide's loader: a mismatch names the key)."""
    path = weights_file(kind, weights)
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises several types for a broken file
        raise WeightsError(f"proving ground {kind}: cannot read {path}: {error}") from None
    load_weights(module, {k: v.float() for k, v in state.items()}, path, f"(proving ground {kind})")
    return module.eval()


class WorldScorer(Scorer):
    """An identity scorer of the proving ground: cosine of unit embeddings."""

    def __init__(self, name: str, net: nn.Module):
        super().__init__(PREPROCESS)
        self.name = name
        self.net = net

    def encode(self, pixels: torch.Tensor) -> Embedding:
        return Embedding(F.normalize(self.net(pixels).float(), dim=-1))


def load_guide(weights=None) -> Scorer:
    """Proving ground guide scorer: plain CNN trained for identity under context change (steers)."""
    return WorldScorer("proving-guide", load_state(GuideNet(), "guide", weights))


def load_judge(weights=None) -> Scorer:
    """Proving ground held-out judge: residual CNN, other seed and augmentations (never steers)."""
    return WorldScorer("proving-judge", load_state(JudgeNet(), "judge", weights))


class Oracle:
    """K-way identity classifier: decides whether a sample *is* the reference identity."""

    def __init__(self, weights=None, device: str | torch.device = "cpu"):
        self.net = load_state(OracleNet(), "oracle", weights).to(device).requires_grad_(False)
        self.device = torch.device(device)

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``[N,3,H,W]`` in [0, 1] → class probabilities ``[N, K]``."""
        out = [F.softmax(self.net(PREPROCESS(images[i : i + batch_size].to(self.device).float())), dim=-1)
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).cpu() if out else torch.zeros(0, NUM_IDENTITIES)


class SceneOracle:
    """Reads the scene of images: background kind (``BACKGROUNDS``) and side (``SIDES``)."""

    def __init__(self, weights=None, device: str | torch.device = "cpu"):
        self.net = load_state(SceneOracleNet(), "scene_oracle", weights).to(device).requires_grad_(False)
        self.device = torch.device(device)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N,3,H,W]`` in [0, 1] → (background ``[N]``, side ``[N]``) encodings."""
        parts = [self.net(PREPROCESS(images[i:i + batch_size].to(self.device).float())).cpu()
                 for i in range(0, len(images), batch_size)]
        logits = torch.cat(parts) if parts else torch.zeros(0, len(BACKGROUNDS) + len(SIDES))
        return logits[:, :len(BACKGROUNDS)].argmax(-1), logits[:, len(BACKGROUNDS):].argmax(-1)


def load_generator(weights=None, cls=None):
    return load_state(generator_unet(cls), "generator", weights)
