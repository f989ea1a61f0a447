"""Path-search settings against best-of-N and zero-order search at one budget, on the proving ground.

    python benchmarks/path_search_sweep.py                      # 8 references × 3 seeds, budget 8 (~25 min on 2 cores)
    python benchmarks/path_search_sweep.py --references 8 --seeds 8 --budgets 4,8,16 --settings 0.5:2 --paths-only

Judged by the oracle (identity accuracy) and the held-out judge, never by the guide that scored.
The task seeds are those of ``steering_bench.py`` (1…), so its table's unguided and best-of-N rows apply.
"""

import argparse
import sys
import time

import torch

from idguide_proving.harness import Sampling, best_of, path_searched, searched
from idguide_proving.judging import Judges
from idguide_proving.pipeline import IdentityWorldPipeline

REFERENCES = [0, 9, 18, 27, 5, 14, 23, 30]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--references", type=int, default=8, help="of the 8 spread over categories and twins")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="8")
    parser.add_argument("--settings", default="0.5:1,0.5:2,0.3:2,0.7:2", help="strength:parents, comma-separated")
    parser.add_argument("--paths-only", action="store_true", help="skip best-of-N and zero-order search")
    parser.add_argument("--reference-set", choices=("sweep", "bench"), default="sweep",
                        help="the references above, or steering_bench.py's (its tables' tasks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.reference_set == "bench":
        from steering_bench import reference_identities  # benchmarks/ is the script's folder

        references = reference_identities(args.references)
    else:
        references = REFERENCES[: args.references]
    budgets = [int(b) for b in args.budgets.split(",")]
    settings = [(float(s), int(p)) for s, p in (x.split(":") for x in args.settings.split(","))]
    pipe, judges = IdentityWorldPipeline.from_weights(), Judges()
    results: dict[str, list] = {}
    started = time.time()
    for ref in references:
        for seed in range(1, args.seeds + 1):
            if not args.paths_only:
                for s in best_of(pipe, judges.guide, ref, seed, Sampling(), budgets) + \
                        searched(pipe, judges.guide, ref, seed, Sampling(), budgets):
                    results.setdefault(f"{s.method} {s.budget}", []).append(s)
            for budget in budgets:
                for strength, parents in settings:
                    s = path_searched(pipe, judges.guide, ref, seed, Sampling(), budget, parents=parents,
                                      strength=strength)
                    results.setdefault(f"path-search n={budget} strength={strength} parents={parents}", []).append(s)
        print(f"reference {ref} done, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    print("| method | tasks | oracle acc | twin conf | oracle conf | guide sim | judge sim | fd_seen | NFE | "
          "scorer passes | s/sample |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name, samples in results.items():
        refs = [s.reference for s in samples]
        row = judges.summary(judges.score(torch.stack([s.image for s in samples]), refs), refs)
        c = samples[0].compute
        seconds = sum(s.compute.seconds for s in samples) / len(samples)
        print(f"| {name} | {len(samples)} | {row['oracle_acc']:.3f} | {row['twin_conf']:.3f} | {row['oracle_conf']:.3f} | "
              f"{row['guide_sim']:.3f} | {row['judge_sim']:.3f} | {row['fd_seen']:.2f} | {c.unet} | {c.scorer} | "
              f"{seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
