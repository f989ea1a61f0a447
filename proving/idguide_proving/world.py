"""Procedural identities: a small world where the ground truth of "same instance" is known.

An identity is an object with intrinsic attributes: outline shape and pattern type (together
its *category*, what a prompt would say: "a striped disc"), a colour pair (fill, pattern) and
the pattern's density. Within a category the 8 identities are 4 colour pairs × 2 densities;
the two densities of one colour pair are **near-identical twins** (they differ in that one
attribute), NearID-style distractors.

Every image shows one identity in a random *context* — position, scale, rotation,
background (flat, gradient or textured), lighting and contrast, sometimes a partial
occlusion — drawn from the seed alone, so the context says nothing about the identity.
``render(identity, seed)`` is deterministic; ``render_batch`` draws many at once (the same
image for the same pair, whatever else is in the batch).

A *scene* is what a prompt may ask for beyond the category: the background kind and the side
of the image the object stands on. ``render(identity, seed, background=..., side=...)`` fixes
the named attributes and leaves the rest of the context random from the seed. A named scene
stays inside the unnamed contexts' range (so every model trained on unnamed renders reads it):
a named side puts the object's centre 7–15 % of the width off the middle (unnamed: anywhere
within ±15 %), a named gradient runs between colours at least 0.3 apart in value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 32  # images are SIZE × SIZE RGB
SUPERSAMPLE = 2  # drawn at 2× and box-filtered: smooth edges

CATEGORIES = ("striped disc", "checked square", "dotted hexagon", "striped triangle")
_SHAPES = ("disc", "square", "hexagon", "triangle")
_PATTERNS = ("stripes", "checks", "dots", "stripes")
PALETTES = (  # (fill, pattern) — saturated, so muted backgrounds never hide an object
    ((0.86, 0.10, 0.10), (0.96, 0.96, 0.96)),  # red / white
    ((0.10, 0.22, 0.82), (1.00, 0.84, 0.10)),  # blue / yellow
    ((0.08, 0.58, 0.20), (0.98, 0.48, 0.86)),  # green / pink
    ((0.55, 0.14, 0.72), (0.20, 0.96, 0.90)),  # purple / cyan
)
PALETTE_NAMES = ("red/white", "blue/yellow", "green/pink", "purple/cyan")
DENSITIES = (1.5, 2.5)  # pattern periods across the object's radius: "coarse", "fine"
BACKGROUNDS = ("flat", "gradient", "textured")  # scene attribute: background kind (index = encoding)
SIDES = ("left", "right")  # scene attribute: the object's side (index = encoding)
SIDE_OFFSET = (0.07, 0.15)  # a named side: |centre offset| range, fraction of the width
GRADIENT_CONTRAST = 0.3  # a named gradient: the least difference of value between its two colours


@dataclass(frozen=True)
class Identity:
    index: int
    category: int
    palette: int
    density: int  # 0 coarse, 1 fine

    @property
    def twin(self) -> int:
        """The near-identical identity: same category and colours, the other density."""
        return self.index ^ 1

    @property
    def name(self) -> str:
        fine = ("coarse", "fine")[self.density]
        return f"{fine} {PALETTE_NAMES[self.palette]} {CATEGORIES[self.category]}"


IDENTITIES: tuple[Identity, ...] = tuple(
    Identity(c * 8 + p * 2 + d, c, p, d) for c in range(len(CATEGORIES)) for p in range(4) for d in range(2)
)
NUM_IDENTITIES = len(IDENTITIES)
NUM_CATEGORIES = len(CATEGORIES)


def identities_of(category: int) -> list[int]:
    return [i.index for i in IDENTITIES if i.category == category]


def check_identity(identity: int) -> int:
    if isinstance(identity, bool) or not isinstance(identity, (int, np.integer)) or not 0 <= identity < NUM_IDENTITIES:
        raise ValueError(f"identity must be an integer in [0, {NUM_IDENTITIES}), got {identity!r}")
    return int(identity)


# --- context -------------------------------------------------------------------------------
def check_scene(background, side) -> tuple[int | None, int | None]:
    """A scene as encodings: background by index or name (``BACKGROUNDS``), side likewise (``SIDES``)."""
    out = []
    for what, value, names in (("background", background, BACKGROUNDS), ("side", side, SIDES)):
        if value is None:
            out.append(None)
        elif isinstance(value, str) and value in names:
            out.append(names.index(value))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(names):
            out.append(int(value))
        else:
            raise ValueError(f"{what} must be one of {', '.join(names)} (or its index), got {value!r}")
    return out[0], out[1]


def _context(seed: int, background: int | None = None, side: int | None = None) -> dict:
    """All context parameters of one image, from its seed alone (and the named scene attributes)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x1D6])
    bg_kind = rng.integers(3)  # flat, gradient, texture
    hsv = np.stack([rng.uniform(0, 1, 2), rng.uniform(0.0, 0.35, 2), rng.uniform(0.25, 0.8, 2)], 1)
    colours = np.array([_hsv_to_rgb(*c) for c in hsv], dtype=np.float32)
    occlude = rng.uniform() < 0.25
    ctx = {
        "cx": rng.uniform(-0.15, 0.15), "cy": rng.uniform(-0.15, 0.15),  # centre, fraction of the side
        "radius": rng.uniform(0.26, 0.36),  # fraction of the side
        "angle": rng.uniform(-math.pi / 6, math.pi / 6),
        "bg_kind": int(bg_kind), "bg": colours, "bg_dir": rng.uniform(0, 2 * math.pi),
        "texture": rng.normal(0, 1, (6, 6)).astype(np.float32) * 0.06,
        "gain": rng.uniform(0.8, 1.15), "bias": rng.uniform(-0.05, 0.05), "contrast": rng.uniform(0.8, 1.1),
        "light_dir": rng.uniform(0, 2 * math.pi), "light": rng.uniform(0.0, 0.15),
        "occlude": bool(occlude), "occ_angle": rng.uniform(0, 2 * math.pi), "occ_depth": rng.uniform(0.55, 0.8),
        "occ_colour": colours[0] * rng.uniform(0.6, 1.0),
        "pattern_phase": rng.uniform(0, 1, 2),
    }
    ctx["cx"], ctx["bg_kind"], ctx["bg"] = _named_scene(ctx, hsv, background, side)
    return ctx


def _named_scene(ctx: dict, hsv: np.ndarray, background: int | None, side: int | None):
    """Centre, background kind and colours with the named attributes applied, deterministically
    from the seed's own draws (nothing named: the draws unchanged)."""
    cx, kind, colours = ctx["cx"], ctx["bg_kind"], ctx["bg"]
    if side is not None:
        low, high = SIDE_OFFSET
        cx = (1 if side == 1 else -1) * (low + (high - low) * abs(cx) / 0.15)
    if background is not None:
        kind = background
        if kind == 1 and abs(hsv[0, 2] - hsv[1, 2]) < GRADIENT_CONTRAST:
            hsv = hsv.copy()
            up = hsv[0, 2] + GRADIENT_CONTRAST
            hsv[1, 2] = up if up <= 0.8 else hsv[0, 2] - GRADIENT_CONTRAST
            colours = np.array([_hsv_to_rgb(*c) for c in hsv], dtype=np.float32)
    return cx, kind, colours


def scene_of(seed: int, background=None, side=None) -> tuple[int, int]:
    """(background, side) encodings of the render of ``seed`` (an unnamed side is the sign of the
    centre's offset, which may be close to the middle)."""
    background, side = check_scene(background, side)
    ctx = _context(seed, background, side)
    return ctx["bg_kind"], int(ctx["cx"] > 0)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return tuple(rgb.tolist())


# --- drawing -------------------------------------------------------------------------------
def _shape_mask(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if shape == "disc":
        return (u * u + v * v <= 1.0).float()
    if shape == "square":
        return ((u.abs() <= 0.85) & (v.abs() <= 0.85)).float()
    if shape == "hexagon":
        inside = torch.ones_like(u, dtype=torch.bool)
        for k in range(6):
            a = k * math.pi / 3
            inside &= u * math.cos(a) + v * math.sin(a) <= 0.92
        return inside.float()
    # triangle, pointing up, circumradius 1.4
    inside = torch.ones_like(u, dtype=torch.bool)
    for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
        inside &= -(u * math.cos(a) - v * math.sin(a)) <= 0.7
    return inside.float()


def _pattern_mask(pattern: str, u: torch.Tensor, v: torch.Tensor, density: float, phase) -> torch.Tensor:
    pu, pv = u * density + float(phase[0]), v * density + float(phase[1])
    if pattern == "stripes":
        return (torch.frac(pu + 10) < 0.5).float()
    if pattern == "checks":
        return ((torch.floor(pu + 10) + torch.floor(pv + 10)) % 2).float()
    du, dv = torch.frac(pu + 10) - 0.5, torch.frac(pv + 10) - 0.5  # dots
    return (du * du + dv * dv < 0.28**2).float()


def _draw(identity: Identity, ctx: dict) -> torch.Tensor:
    n = SIZE * SUPERSAMPLE
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / n - 0.5  # [-0.5, 0.5)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    # background
    c0, c1 = torch.from_numpy(ctx["bg"][0]), torch.from_numpy(ctx["bg"][1])
    if ctx["bg_kind"] == 0:
        bg = c0.view(3, 1, 1).expand(3, n, n)
    else:
        d = x * math.cos(ctx["bg_dir"]) + y * math.sin(ctx["bg_dir"]) + 0.5
        t = d.clamp(0, 1) if ctx["bg_kind"] == 1 else torch.full_like(d, 0.5)
        bg = c0.view(3, 1, 1) * (1 - t) + c1.view(3, 1, 1) * t
        if ctx["bg_kind"] == 2:
            noise = torch.from_numpy(ctx["texture"])[None, None]
            noise = F.interpolate(noise, size=(n, n), mode="bicubic", align_corners=False)[0]
            bg = bg + noise
    # object, in its own frame (pattern turns and scales with it)
    dx, dy = x - ctx["cx"], y - ctx["cy"]
    ca, sa = math.cos(ctx["angle"]), math.sin(ctx["angle"])
    u = (dx * ca + dy * sa) / ctx["radius"]
    v = (-dx * sa + dy * ca) / ctx["radius"]
    shape = _shape_mask(_SHAPES[identity.category], u, v)
    pattern = _pattern_mask(_PATTERNS[identity.category], u, v, DENSITIES[identity.density], ctx["pattern_phase"])
    fill, ink = (torch.tensor(c).view(3, 1, 1) for c in PALETTES[identity.palette])
    obj = fill * (1 - pattern) + ink * pattern
    shade = 1 + ctx["light"] * (x * math.cos(ctx["light_dir"]) + y * math.sin(ctx["light_dir"])) * 2
    image = bg * (1 - shape) + obj * shade * shape
    if ctx["occlude"]:  # a band of background-like colour over one side of the object
        ox, oy = math.cos(ctx["occ_angle"]), math.sin(ctx["occ_angle"])
        band = ((dx * ox + dy * oy) / ctx["radius"] > ctx["occ_depth"]).float()
        image = image * (1 - band) + torch.from_numpy(ctx["occ_colour"]).view(3, 1, 1) * band
    image = (image - 0.5) * ctx["contrast"] + 0.5
    image = image * ctx["gain"] + ctx["bias"]
    image = F.avg_pool2d(image[None], SUPERSAMPLE)[0]
    return image.clamp(0, 1)


def render_batch(identities: Sequence[int], seeds: Sequence[int], backgrounds: Sequence | None = None,
                 sides: Sequence | None = None) -> torch.Tensor:
    """Float images ``[N,3,SIZE,SIZE]`` in [0, 1]; image i shows ``identities[i]`` in context ``seeds[i]``,
    on background ``backgrounds[i]`` and side ``sides[i]`` where those are given (``None`` = from the seed)."""
    n = len(identities)
    backgrounds = [None] * n if backgrounds is None else list(backgrounds)
    sides = [None] * n if sides is None else list(sides)
    if not len(seeds) == len(backgrounds) == len(sides) == n:
        raise ValueError(f"{n} identities but {len(seeds)} seeds, {len(backgrounds)} backgrounds, {len(sides)} sides")
    images = [_draw(IDENTITIES[check_identity(i)], _context(s, *check_scene(b, d)))
              for i, s, b, d in zip(identities, seeds, backgrounds, sides)]
    if not images:
        return torch.zeros(0, 3, SIZE, SIZE)
    return torch.stack(images)


FRESH_SEED = 1_000_000_000  # contexts from here on are never used in training (which uses seeds < 10⁸)


def fresh_renders(identities: Sequence[int], offset: int = 0, backgrounds: Sequence | None = None,
                  sides: Sequence | None = None) -> torch.Tensor:
    """Renders of ``identities`` in contexts never used in training (seeds ``FRESH_SEED + offset + i``)."""
    return render_batch(list(identities), [FRESH_SEED + offset + i for i in range(len(identities))], backgrounds, sides)


def render(identity: int, seed: int, background=None, side=None) -> np.ndarray:
    """One image: uint8 ``[SIZE, SIZE, 3]`` of ``identity`` in the context drawn from ``seed``, on the
    named ``background`` ("flat", "gradient", "textured") and ``side`` ("left", "right") if given."""
    return to_uint8(render_batch([identity], [seed], [background], [side]))[0]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N,3,H,W]`` floats in [0, 1] → uint8 ``[N,H,W,3]``."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

