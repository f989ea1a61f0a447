"""Tasks, and how samples are judged: by the oracles and the held-out judge, never by the scorer that steered.

A task is (reference identity, seed). Pixel world: the prompt is the reference's category, the
reference image a render in a context of its own. Latent world: the reference image shows the
identity on a named background and side (``reference_scene``), and the prompt asks for the
category on a *different* background and the *other* side (``prompt_scene``) — steering must
bring the identity and leave the scene to the prompt.

For samples generated for tasks: oracle identity accuracy (the headline), near-twin confusion,
category accuracy, oracle confidence (realism), guide and judge similarity to the reference
image, two Fréchet distances of judge features — to fresh renders of all identities (``fd``),
and to fresh renders of what the oracles see in the samples, as many (``fd_seen``) — and, where
the prompt names a scene, prompt adherence (the scene oracle reads the prompted background and
side) and copy rate (it reads the reference's background or side instead). Steering *should*
change which identities appear, and ``fd`` counts that as unrealism (fresh renders of the task
identities themselves score worse than unguided samples); ``fd_seen`` compares each sample with
real images of what it shows, so it measures realism alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from scipy import linalg

from idguide.scorers.base import Scorer
from .models import PREPROCESS, Oracle, SceneOracle, load_guide, load_judge
from .world import BACKGROUNDS, CATEGORIES, FRESH_SEED, IDENTITIES, NUM_IDENTITIES, SIDES, render_batch, scene_of

REFERENCE_SEED = FRESH_SEED + 500_000_000  # the reference images' own contexts
FEATURE_SET_SEED = FRESH_SEED + 100_000_000  # the fresh renders the Fréchet distance compares to
SEEN_SET_SEED = FRESH_SEED + 150_000_000  # fresh renders of the identities the oracle sees (fd_seen)
WORLDS = ("pixel", "latent")
NOT_NAMED = -1  # a scene attribute a prompt does not name (pixel world)


def check_world(world: str) -> str:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    return world


def reference_scene(identity: int) -> tuple[int, int]:
    """(background, side) of the latent world's reference image of ``identity``: spread so each
    background and side is a reference's as often as the others among consecutive identities."""
    return identity % len(BACKGROUNDS), (identity // len(BACKGROUNDS)) % len(SIDES)


def prompt_scene(identity: int, seed: int) -> tuple[int, int]:
    """(background, side) the latent world's prompt asks for in task (identity, seed): a background
    other than the reference's (which of the two, by the seed) and the other side."""
    background, side = reference_scene(identity)
    return (background + 1 + seed % 2) % len(BACKGROUNDS), 1 - side


def task_prompt(world: str, identity: int, seed: int) -> str:
    """The prompt of task (identity, seed) in ``world``."""
    category = CATEGORIES[IDENTITIES[identity].category]
    if check_world(world) == "pixel":
        return category
    background, side = prompt_scene(identity, seed)
    return f"{category} on a {BACKGROUNDS[background]} background, on the {SIDES[side]}"


def task_scenes(world: str, identity: int, seed: int) -> dict[str, int]:
    """The scene encodings a sample records: what the prompt asked for (``NOT_NAMED`` in the pixel
    world) and what the reference image shows."""
    if check_world(world) == "pixel":
        background, side = scene_of(REFERENCE_SEED + identity)
        return {"prompt_background": NOT_NAMED, "prompt_side": NOT_NAMED,
                "reference_background": background, "reference_side": side}
    (pb, ps), (rb, rs) = prompt_scene(identity, seed), reference_scene(identity)
    return {"prompt_background": pb, "prompt_side": ps, "reference_background": rb, "reference_side": rs}


def reference_image(identity: int, world: str = "pixel") -> torch.Tensor:
    """The reference image of ``identity``: a render in a context of its own (in the latent world,
    on its ``reference_scene``), ``[3,H,W]``."""
    scene = reference_scene(identity) if check_world(world) == "latent" else (None, None)
    return render_batch([identity], [REFERENCE_SEED + identity], [scene[0]], [scene[1]])[0]


def balanced_scenes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Backgrounds and sides for ``n`` renders, every combination equally often."""
    k = np.arange(n)
    return k % len(BACKGROUNDS), (k // len(BACKGROUNDS)) % len(SIDES)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` (as FID does)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product (few samples): nudge as FID implementations do
        eps = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    root = root.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@dataclass
class Scores:
    """Per-sample judgements, in the order of the samples."""

    predicted: np.ndarray  # oracle class
    confidence: np.ndarray  # oracle max probability
    guide: np.ndarray  # guide similarity to the reference image
    judge: np.ndarray  # held-out judge similarity to the reference image
    features: np.ndarray  # judge features [N, 96] (Fréchet distance)
    background: np.ndarray  # scene oracle: background kind
    side: np.ndarray  # scene oracle: side


class Judges:
    """The identity and scene oracles, the held-out judge and (only to report its own view) the
    guide scorer, for samples of ``world`` (its reference images and its renders)."""

    def __init__(self, guide: Scorer | None = None, feature_renders: int = 2048, world: str = "pixel"):
        self.world = check_world(world)
        self.oracle = Oracle()
        self.scene_oracle = SceneOracle()
        self.judge = load_judge()
        self.guide = guide if guide is not None else load_guide()
        self.feature_renders = feature_renders

    def renders(self, identities, seeds, backgrounds=None, sides=None) -> torch.Tensor:
        """Fresh renders as this world shows them: the latent world's always on a named scene
        (balanced over scenes unless given), the pixel world's in unnamed contexts."""
        if self.world == "latent" and backgrounds is None:
            backgrounds, sides = balanced_scenes(len(identities))
        return render_batch(identities, seeds, backgrounds, sides)

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> np.ndarray:
        return torch.cat([self.judge.net.features(PREPROCESS(images[i:i + 512].float()))
                          for i in range(0, len(images), 512)]).numpy().astype(np.float64)

    @cached_property
    def render_features(self) -> np.ndarray:
        ids = np.arange(self.feature_renders) % NUM_IDENTITIES
        # balanced_scenes cycles with period 6 and the identities with 32: every pairing occurs
        return self.features(self.renders(ids, FEATURE_SET_SEED + np.arange(self.feature_renders)))

    @torch.inference_mode()
    def score(self, images: torch.Tensor, references: Sequence[int]) -> Scores:
        """Judge ``[N,3,H,W]`` samples, sample i made for reference identity ``references[i]``."""
        refs = torch.stack([reference_image(r, self.world) for r in references])
        probs = self.oracle.probabilities(images)
        confidence, predicted = probs.max(-1)
        guide = self.guide.similarity(self.guide.embed(refs), self.guide.embed(images.to(self.guide.device)))
        judge = self.judge.similarity(self.judge.embed(refs), self.judge.embed(images))
        background, side = self.scene_oracle.predict(images)
        return Scores(predicted.numpy(), confidence.numpy(), guide.cpu().numpy(), judge.numpy(),
                      self.features(images), background.numpy(), side.numpy())

    def summary(self, scores: Scores, references: Sequence[int], scenes: Sequence[dict] | None = None) -> dict:
        """Means over the samples; ``scenes`` (``task_scenes`` per sample) add prompt adherence
        and copy rate where the prompts name a scene."""
        refs = np.asarray(references)
        twins = np.array([IDENTITIES[r].twin for r in refs])
        categories = np.array([IDENTITIES[r].category for r in refs])
        hit = scores.predicted == refs
        n = len(refs)
        return {
            "samples": n,
            "oracle_acc": float(hit.mean()),
            "acc_se": float(np.sqrt(hit.mean() * (1 - hit.mean()) / max(n, 1))),
            "twin_conf": float((scores.predicted == twins).mean()),
            "category_acc": float((np.array([IDENTITIES[p].category for p in scores.predicted]) == categories).mean()),
            "oracle_conf": float(scores.confidence.mean()),
            "guide_sim": float(scores.guide.mean()),
            "judge_sim": float(scores.judge.mean()),
            "fd": frechet_distance(scores.features, self.render_features) if n > 2 else float("nan"),
            "fd_seen": self.seen_distance(scores) if n > 2 else float("nan"),
            **self.scene_summary(scores, scenes),
        }

    @staticmethod
    def scene_summary(scores: Scores, scenes: Sequence[dict] | None) -> dict:
        """Prompt adherence (the scene oracle reads both prompted attributes), per attribute, and
        copy rate (it reads the reference's background or side, which the prompt did not ask for)."""
        nan = float("nan")
        named = [i for i, s in enumerate(scenes or []) if s["prompt_background"] != NOT_NAMED]
        if not named:
            return {"adherence": nan, "background_adherence": nan, "side_adherence": nan, "copy_rate": nan}
        field = lambda key: np.array([scenes[i][key] for i in named])  # noqa: E731
        background, side = scores.background[named], scores.side[named]
        on_background, on_side = background == field("prompt_background"), side == field("prompt_side")
        copied = (background == field("reference_background")) | (side == field("reference_side"))
        return {"adherence": float((on_background & on_side).mean()), "background_adherence": float(on_background.mean()),
                "side_adherence": float(on_side.mean()), "copy_rate": float(copied.mean())}

    def seen_distance(self, scores: Scores) -> float:
        """Fréchet distance to fresh renders of what the oracles read in the samples (the identity;
        in the latent world also the background and side)."""
        seeds = SEEN_SET_SEED + np.arange(len(scores.predicted))
        scene = (scores.background, scores.side) if self.world == "latent" else (None, None)
        return frechet_distance(scores.features, self.features(self.renders(scores.predicted, seeds, *scene)))
