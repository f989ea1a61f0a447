"""Pricing the proving ground's samples the way real models price them.

A sample records integer image-passes per component (``harness.COUNTS``: ``unet``, ``dec``,
``dec_grad``, ``tiny_dec``, ``tiny_dec_grad``, ``enc``, ``scorer``, ``scorer_grad``). A *cost
profile* (``benchmarks/cost_profile.py`` writes them; ``benchmarks/profiles/`` ships some) gives
each component's cost at a real architecture size — FLOPs, and seconds where measured — so a
sample costs Σ count × cost. It is reported in **unguided-sample equivalents**: divided by what
one unguided sample of the same sampling costs (its denoiser evaluations and one decode).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .harness import COUNTS

BASES = ("flops", "seconds")


@dataclass(frozen=True)
class Profile:
    name: str  # the file's stem, e.g. "sd15-512-idsim-dinov2-vitl14"
    family: str
    size: int
    scorer: str
    components: Mapping[str, Mapping[str, float | None]]

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"cost profile {path}: cannot read it ({error})") from None
        components = data.get("components") if isinstance(data, dict) else None
        missing = [k for k in COUNTS if not isinstance(components, dict) or k not in components]
        if missing:
            raise ValueError(f"cost profile {path}: no cost for {', '.join(missing)} (components must price "
                             f"every count: {', '.join(COUNTS)})")
        return cls(path.stem, data.get("family", "?"), data.get("size", 0), data.get("scorer", "?"), components)

    def cost(self, counts: Mapping[str, float], basis: str = "flops") -> float:
        """Σ count × cost; NaN where a counted component has no cost on this basis."""
        if basis not in BASES:
            raise ValueError(f"basis must be one of {', '.join(BASES)}, got {basis!r}")
        total = 0.0
        for name in COUNTS:
            count = counts.get(name, 0)
            if count:
                value = self.components[name].get(basis)
                total += count * (value if value is not None else math.nan)
        return total

    def unguided(self, unet_passes: int, basis: str = "flops") -> float:
        """What one unguided sample costs: its denoiser evaluations and one full decode."""
        return self.cost({"unet": unet_passes, "dec": 1}, basis)

    def equivalents(self, counts: Mapping[str, float], unet_passes: int, basis: str = "flops") -> float:
        """The cost of ``counts`` in unguided samples of ``unet_passes`` denoiser evaluations."""
        return self.cost(counts, basis) / self.unguided(unet_passes, basis)
