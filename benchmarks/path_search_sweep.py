"""Path-search settings against best-of-N and zero-order search at one budget, on the proving ground.

    python benchmarks/path_search_sweep.py          # 8 references × 3 seeds, budget 8 (~25 min on 2 cores)

Judged by the oracle (identity accuracy) and the held-out judge, never by the guide that scored.
"""

import sys
import time

import torch

from idguide.proving.harness import Sampling, best_of, path_searched, searched
from idguide.proving.judging import Judges
from idguide.proving.pipeline import IdentityWorldPipeline

REFERENCES = [0, 9, 18, 27, 5, 14, 23, 30]
SEEDS = [1, 2, 3]
BUDGET = 8
SETTINGS = [(0.5, 1), (0.5, 2), (0.3, 2), (0.7, 2)]  # (strength, parents)


def main() -> None:
    pipe, judges = IdentityWorldPipeline.from_weights(), Judges()
    results: dict[str, list] = {}
    started = time.time()
    for ref in REFERENCES:
        for seed in SEEDS:
            for s in best_of(pipe, judges.guide, ref, seed, Sampling(), [BUDGET]) + \
                    searched(pipe, judges.guide, ref, seed, Sampling(), [BUDGET]):
                results.setdefault(s.method, []).append(s)
            for strength, parents in SETTINGS:
                s = path_searched(pipe, judges.guide, ref, seed, Sampling(), BUDGET, parents=parents, strength=strength)
                results.setdefault(f"path-search strength={strength} parents={parents}", []).append(s)
        print(f"reference {ref} done, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    print(f"| method (budget {BUDGET}) | tasks | oracle acc | judge sim | guide sim | NFE |\n|---|---|---|---|---|---|")
    for name, samples in results.items():
        refs = [s.reference for s in samples]
        scores = judges.score(torch.stack([s.image for s in samples]), refs)
        print(f"| {name} | {len(samples)} | {(scores.predicted == refs).mean():.3f} | {scores.judge.mean():.3f} | "
              f"{scores.guide.mean():.3f} | {samples[0].compute.nfe} |")


if __name__ == "__main__":
    main()
