"""Proving ground: does steering change the *identity*, or only fool the scorer that steered?

Trained generator (category-prompted pixel diffusion), guide scorer (steers), held-out judge
and oracle (judge; never steer) — see ``idguide.proving``. For R reference identities × S
seeds, each method runs at several budgets; the table reports oracle identity accuracy (the
headline), near-twin confusion, guide vs judge similarity gains over unguided (a guide gain
without a judge gain is hacking), realism (oracle confidence, Fréchet distance of judge
features to fresh renders) and compute (NFE, scorer/decoder passes, seconds on this machine).

    python benchmarks/steering_bench.py --out benchmarks/out/steering           # full (8 × 8)
    python benchmarks/steering_bench.py --out /tmp/steering --quick             # ≤ 10 min (4 × 4)
    python benchmarks/steering_bench.py --render-set 100 --out renders.npz      # renders for your own judge
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from idguide import load_scorer
from idguide.drawing import pyplot
from idguide.proving.harness import (SCHEDULERS, Sample, Sampling, best_of, generators, guided, particles,
                                     path_searched, searched, unguided, use_scheduler)
from idguide.proving.judging import Judges, frechet_distance, reference_image
from idguide.proving.pipeline import IdentityWorldPipeline
from idguide.proving.world import CATEGORIES, IDENTITIES, NUM_IDENTITIES, fresh_renders, identities_of, to_uint8

COLUMNS = ["method", "budget", "scheduler", "samples", "oracle_acc", "acc_se", "twin_conf", "category_acc",
           "oracle_conf", "guide_sim", "guide_gain", "judge_sim", "judge_gain", "fd", "fd_seen", "nfe", "scorer_fwd",
           "scorer_bwd", "decoder", "seconds"]


VARIANTS = {  # the callback's defaults (4 views, recurrence 2) with one defence changed
    "guidance-no-recurrence": {"recurrence": 0},
    "guidance-one-view": {"augment": None},
    "guidance+decay": {"schedule": "decay"},
}


def reference_identities(count: int) -> list[int]:
    """Spread over categories, colours and both twins of a pair."""
    out = []
    for k in range(count):
        category, palette = k % 4, (k // 4 + k) % 4
        density = ((k // 4) + category) % 2
        out.append(category * 8 + palette * 2 + density)
    if len(set(out)) != len(out) or count > NUM_IDENTITIES:
        raise ValueError(f"choose at most 16 references, got {count}")
    return out


def run_all(args, pipe, guide) -> list[Sample]:
    refs, seeds = reference_identities(args.references), list(range(1, args.seeds + 1))
    budgets = [2**k for k in range(int(math.log2(args.max_n)) + 1)]
    window = {"end": args.guide_end}
    for name in args.schedulers:  # warm-up, so the first method timed pays no one-off costs
        unguided(pipe, guide, refs[0], [0], Sampling(2, args.cfg, name))
    samples: list[Sample] = []
    started = time.time()
    for i, ref in enumerate(refs, 1):
        default = Sampling(args.steps, args.cfg, args.schedulers[0])
        on_particles = Sampling(args.steps, args.cfg, args.particle_scheduler)
        for seed in seeds:
            samples += best_of(pipe, guide, ref, seed, default, budgets)
            if args.particles and on_particles.scheduler != default.scheduler:  # best-of-N where the particles run
                samples += best_of(pipe, guide, ref, seed, on_particles, [n for n in budgets if n <= max(args.particles)])
            samples += [particles(pipe, guide, ref, seed, on_particles, k) for k in args.particles]
            if args.search and args.max_n >= 4:
                samples += searched(pipe, guide, ref, seed, default, [n for n in budgets if n >= 4])
                samples += [path_searched(pipe, guide, ref, seed, default, n) for n in budgets if n >= 4]
        for name in args.schedulers:
            sampling = Sampling(args.steps, args.cfg, name)
            samples += unguided(pipe, guide, ref, seeds, sampling)
            for scale in args.scales:
                samples += guided(pipe, guide, ref, seeds, sampling, scale, **window)
        for scale in args.scales:  # the defences one at a time against the defaults, on the default scheduler
            for method, change in VARIANTS.items():
                samples += guided(pipe, guide, ref, seeds, default, scale, method, **change, **window)
        for name in args.one_view_on:  # where one plain view lets the guide run ahead of the judge
            samples += guided(pipe, guide, ref, seeds, Sampling(args.steps, args.cfg, name), max(args.scales),
                              "guidance-one-view", **VARIANTS["guidance-one-view"], **window)
        print(f"reference {i}/{len(refs)} ({IDENTITIES[ref].name}) done, {time.time() - started:.0f} s",
              file=sys.stderr, flush=True)
    return samples


def generator_report(pipe, judges: Judges, per_category: int, sampling: Sampling) -> str:
    """Unguided category-prompted samples: recognisable (oracle), every identity present, realistic (FD)."""
    use_scheduler(pipe, sampling.scheduler)
    lines = ["| category | samples | category acc | oracle conf | identities seen (of 8) | min share | FD |",
             "|---|---|---|---|---|---|---|"]
    all_images = []
    for c, name in enumerate(CATEGORIES):
        seeds = [10_000 * (c + 1) + i for i in range(per_category)]
        images = pipe(num_images_per_prompt=per_category, generator=generators(seeds), output_type="pt",
                      **sampling.kwargs(c)).images
        all_images.append(images)
        probs = judges.oracle.probabilities(images)
        predicted = probs.argmax(-1).numpy()
        members = identities_of(c)
        counts = np.array([(predicted == i).sum() for i in members])
        fd = frechet_distance(judges.features(images), judges.render_features)
        lines.append(f"| {name} | {per_category} | {np.isin(predicted, members).mean():.3f} | "
                     f"{probs.max(-1).values.mean():.3f} | {(counts > 0).sum()} | {counts.min() / per_category:.3f} | "
                     f"{fd:.2f} |")
    images = torch.cat(all_images)
    renders = fresh_renders([i.index for i in IDENTITIES for _ in range(len(images) // NUM_IDENTITIES)], 9_000_000)
    floor = frechet_distance(judges.features(renders), judges.render_features)
    lines.append(f"| all | {len(images)} | | | | | {frechet_distance(judges.features(images), judges.render_features):.2f} "
                 f"(fresh renders, same count: {floor:.2f}) |")
    return "\n".join(lines)


def group_key(s: Sample) -> tuple[str, str, str]:
    return s.method, s.budget, s.scheduler


def table(samples: list[Sample], judges: Judges) -> list[dict]:
    images = torch.stack([s.image for s in samples])
    refs = [s.reference for s in samples]
    scores = judges.score(images, refs)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(group_key(s), []).append(i)
    rows = []
    for key, index in groups.items():
        idx = np.array(index)
        part = type(scores)(*(getattr(scores, f)[idx] for f in scores.__dataclass_fields__))
        row = dict(zip(("method", "budget", "scheduler"), key))
        row.update(judges.summary(part, [refs[i] for i in idx]))
        c = [samples[i].compute for i in idx]
        row.update(nfe=float(np.mean([x.nfe for x in c])), scorer_fwd=float(np.mean([x.scorer_forward for x in c])),
                   scorer_bwd=float(np.mean([x.scorer_backward for x in c])),
                   decoder=float(np.mean([x.decoder_forward for x in c])), seconds=float(np.mean([x.seconds for x in c])))
        rows.append(row)
    baseline = {r["scheduler"]: r for r in rows if r["method"] == "unguided"}
    for row in rows:
        base = baseline.get(row["scheduler"])
        row["guide_gain"] = row["guide_sim"] - base["guide_sim"] if base else float("nan")
        row["judge_gain"] = row["judge_sim"] - base["judge_sim"] if base else float("nan")
    # The ceiling: a fresh render per task (not generated): the oracle's and the Fréchet distance's best.
    tasks = [ref for ref, _ in dict.fromkeys((s.reference, s.seed) for s in samples)]
    renders = fresh_renders(tasks, offset=7_000_000)
    ceiling = {"method": "renders", "budget": "-", "scheduler": "-"}
    ceiling.update(judges.summary(judges.score(renders, tasks), tasks))
    ceiling.update(guide_gain=float("nan"), judge_gain=float("nan"), nfe=0, scorer_fwd=0, scorer_bwd=0, decoder=0,
                   seconds=0.0)
    return rows + [ceiling]


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "nan"
        if float(value).is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.4g}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def write_tables(rows: list[dict], out: Path, header: str) -> None:
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in COLUMNS} for row in rows)
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[k]) for k in COLUMNS) + " |" for row in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pareto(rows: list[dict], out: Path, default_scheduler: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    lines: dict[str, list[dict]] = {}  # each guided line starts at unguided on its scheduler
    for row in rows:
        if row["method"] in ("best-of-n", "noise-search", "path-search", "particles"):
            where = "" if row["scheduler"] == default_scheduler else f" ({row['scheduler']})"
            lines.setdefault(row["method"] + where, []).append(row)
        elif row["method"] != "renders":
            guided_methods = {r["method"] for r in rows if r["method"].startswith("guidance")
                              and r["scheduler"] == row["scheduler"]}
            for method in (guided_methods if row["method"] == "unguided" else {row["method"]}):
                lines.setdefault(f"{method} ({row['scheduler']})", []).append(row)
    for axis, (label, cost) in zip(axes, (
            ("seconds per sample (this CPU)", lambda r: r["seconds"]),
            ("network passes per sample (NFE + scorer fwd/bwd + decoder)",
             lambda r: r["nfe"] + r["scorer_fwd"] + r["scorer_bwd"] + r["decoder"]))):
        colours = plt.cm.tab20.colors  # a colour per line (tab10 repeats after ten)
        for k, (name, part) in enumerate(sorted(lines.items())):
            part = sorted(part, key=cost)
            style = ({"color": "black" if name == "best-of-n" else "grey", "linestyle": "--"}
                     if name.startswith("best-of-n") else {"color": colours[k % 20]})
            axis.plot([cost(r) for r in part], [r["oracle_acc"] for r in part], marker="o", label=name, **style)
        axis.set_xscale("log", base=2)
        axis.xaxis.set_minor_formatter(plt.NullFormatter())
        axis.set_xlabel(label)
        axis.set_ylabel("oracle identity accuracy")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Proving ground: oracle identity accuracy vs compute")
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)


def grids(samples: list[Sample], rows: list[dict], out: Path, default_scheduler: str) -> None:
    """One grid per method, at its most accurate budget: a row per reference (reference first)."""
    from PIL import Image

    for method in sorted({s.method for s in samples}):
        candidates = [r for r in rows if r["method"] == method and r["scheduler"] == default_scheduler] or \
                     [r for r in rows if r["method"] == method]
        best = max(candidates, key=lambda r: r["oracle_acc"])
        chosen = [s for s in samples if group_key(s) == (method, best["budget"], best["scheduler"])]
        refs = sorted({s.reference for s in chosen}, key=[s.reference for s in chosen].index)
        per_row = max(sum(s.reference == r for s in chosen) for r in refs)
        size, gap = chosen[0].image.shape[-1], 2
        canvas = np.full(((size + gap) * len(refs), (size + gap) * (per_row + 1) + gap, 3), 255, np.uint8)
        for i, ref in enumerate(refs):
            tiles = [reference_image(ref)] + [s.image for s in chosen if s.reference == ref]
            for j, tile in enumerate(tiles):
                x = j * (size + gap) + (gap if j else 0)
                canvas[i * (size + gap):i * (size + gap) + size, x:x + size] = to_uint8(tile[None])[0]
        name = f"grid_{method}.png"
        Image.fromarray(canvas).resize((canvas.shape[1] * 3, canvas.shape[0] * 3), Image.NEAREST).save(out / name)


def save_samples(samples: list[Sample], out: Path) -> None:
    np.savez_compressed(
        out / "samples.npz",
        images=to_uint8(torch.stack([s.image for s in samples])),
        reference_identity=np.array([s.reference for s in samples]),
        category=np.array([s.category for s in samples]),
        method=np.array([s.method for s in samples]),
        budget=np.array([s.budget for s in samples]),
        scheduler=np.array([s.scheduler for s in samples]),
        seed=np.array([s.seed for s in samples]),
        nfe=np.array([s.compute.nfe for s in samples]),
        seconds=np.array([s.compute.seconds for s in samples]),
    )
    refs = sorted({s.reference for s in samples})
    np.savez_compressed(out / "references.npz", images=to_uint8(torch.stack([reference_image(r) for r in refs])),
                        identity=np.array(refs))


def render_set(per_identity: int, path: Path) -> None:
    ids = np.repeat(np.arange(NUM_IDENTITIES), per_identity)
    images = fresh_renders(ids.tolist(), offset=300_000_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=to_uint8(images), identity=ids,
                        category=np.array([IDENTITIES[i].category for i in ids]))
    print(f"wrote {len(ids)} renders ({per_identity} per identity) to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (or .npz file with --render-set)")
    parser.add_argument("--quick", action="store_true", help="4 references × 4 seeds, best-of up to 16")
    parser.add_argument("--references", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--max-n", type=int, default=32, help="largest best-of-N budget (a power of 2)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--scales", default="0.5,1,2,4", help="identity guidance scales")
    parser.add_argument("--guide-end", type=float, default=1.0, help="guided part of the steps: [0, END)")
    parser.add_argument("--particles", default="2,4,8,16", help="particle-steering budgets k ('' = none)")
    parser.add_argument("--particle-scheduler", help="the sampler of particle steering (default: the first of "
                        "--schedulers); best-of-N runs there too")
    parser.add_argument("--no-search", dest="search", action="store_false", help="skip noise search (zero-order and paths)")
    parser.add_argument("--schedulers", default="ddim,euler,euler-a,ddpm,dpm++,unipc,flow-euler",
                        help=f"comma-separated, first = the default; of {', '.join(SCHEDULERS)}")
    parser.add_argument("--one-view-on", default="euler,flow-euler",
                        help="schedulers (besides the default) that also get the guidance-one-view row")
    parser.add_argument("--realism-samples", type=int, help="unguided samples per category for the realism table "
                        "(default 64; 32 with --quick)")
    parser.add_argument("--render-set", type=int, metavar="N", help="write N fresh renders per identity and stop")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.render_set is not None:
        render_set(args.render_set, args.out)
        return 0
    if args.quick:
        args.references, args.seeds, args.max_n = 4, 4, 16
    args.scales = [float(x) for x in args.scales.split(",")]
    args.particles = [int(x) for x in args.particles.split(",") if x]
    args.schedulers = args.schedulers.split(",")
    args.one_view_on = [x for x in args.one_view_on.split(",") if x and x != args.schedulers[0]]
    args.particle_scheduler = args.particle_scheduler or args.schedulers[0]
    for name in args.schedulers + args.one_view_on + [args.particle_scheduler]:
        if name not in SCHEDULERS:
            parser.error(f"unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pipe = IdentityWorldPipeline.from_weights()
    guide = load_scorer("proving-guide", device="cpu")  # through the scorer registry, like any user's scorer
    judges = Judges(guide=guide)
    per_category = args.realism_samples or (32 if args.quick else 64)
    realism = generator_report(pipe, judges, per_category, Sampling(args.steps, args.cfg, args.schedulers[0]))
    samples = run_all(args, pipe, guide)
    rows = table(samples, judges)
    header = (f"Proving ground: {args.references} references × {args.seeds} seeds, {args.steps} steps, CFG {args.cfg}; "
              f"prompts = categories ({', '.join(CATEGORIES)}); guided by proving-guide, judged by the oracle and "
              f"proving-judge; best-of-n on {args.schedulers[0]}; total {time.time() - started:.0f} s")
    header += f"\n\nGenerator, unguided ({args.schedulers[0]}), per category prompt:\n\n{realism}\n\nSteering:"
    write_tables(rows, args.out, header)
    pareto(rows, args.out, args.schedulers[0])
    grids(samples, rows, args.out, args.schedulers[0])
    save_samples(samples, args.out)
    print(f"wrote {args.out}/table.md, table.csv, pareto.png, grid_*.png, samples.npz, references.npz "
          f"in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
