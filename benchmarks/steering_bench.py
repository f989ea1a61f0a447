r"""Proving ground: does steering change the *identity*, or only fool the scorer that steered?

Trained generators, guide scorer (steers), held-out judge and oracles (judge; never steer) — see
``idguide_proving``. Two worlds: ``pixel`` (category-prompted pixel diffusion, decoding free) and
``latent`` (a latent model with a KL autoencoder and a tiny distilled one, prompts that name the
category and a scene: every task asks for a background and a side other than the reference
image's). For R reference identities × S seeds, each method runs at several budgets; the table
reports oracle identity accuracy (the headline), near-twin confusion, guide vs judge similarity
gains over unguided (a guide gain without a judge gain is hacking), prompt adherence and copy rate
(latent world: the scene oracle reads the prompted scene, or the reference's), realism (oracle
confidence, Fréchet distances of judge features) and compute: image-passes per component, the
toy's seconds, and with ``--profile`` the cost in unguided-sample equivalents as real models
price it (``benchmarks/profiles/``).

    python benchmarks/steering_bench.py --out benchmarks/out/steering                    # pixel, 8 × 8
    python benchmarks/steering_bench.py --world latent --out benchmarks/out/latent \
        --profile benchmarks/profiles/sd15-512-idsim-dinov2-vitl14.json                   # latent, priced
    python benchmarks/steering_bench.py --out /tmp/steering --quick                      # every method, ≤ 10 min
    python benchmarks/steering_bench.py --render-set 100 --out renders.npz               # renders for your own judge
    python benchmarks/steering_bench.py --world latent --render-set 100 --out renders.npz
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

from idguide import Augment, load_scorer
from idguide.drawing import pyplot
from idguide_proving.costs import BASES, Profile
from idguide_proving.harness import (COUNTS, DECODERS, SCHEDULERS, Trial, Sampling, best_of, generators,
                                     guided, guided_best_of, particles, path_searched, searched, unguided, use_scheduler)
from idguide_proving.judging import Judges, balanced_scenes, frechet_distance, reference_image, task_scenes
from idguide_proving.pipeline import IdentityWorldPipeline, LatentWorldPipeline
from idguide_proving.world import (BACKGROUNDS, CATEGORIES, IDENTITIES, NUM_IDENTITIES, SIDES, fresh_renders,
                                   identities_of, to_uint8)

COLUMNS = ["method", "budget", "scheduler", "samples", "oracle_acc", "acc_se", "twin_conf", "category_acc",
           "adherence", "background_adherence", "side_adherence", "copy_rate", "oracle_conf", "guide_sim",
           "guide_gain", "judge_sim", "judge_gain", "judge_share", "fd", "fd_seen", *COUNTS, "seconds"]


VARIANTS = {  # the callback's defaults (one view, no recurrence) with one setting changed
    "guidance+recurrence": {"recurrence": 2},
    "guidance+views": {"augment": Augment(4)},
    "guidance+decay": {"schedule": "decay"},
}
FULL = {"references": 8, "seeds": 8, "max_n": 32, "scales": "0.5,1,2,4", "particles": "2,4,8,16",
        "schedulers": "ddim,euler,euler-a,ddpm,dpm++,unipc,flow-euler", "views_on": "euler,flow-euler"}
QUICK = {"references": 4, "seeds": 4, "max_n": 4, "scales": "3", "particles": "2,4", "schedulers": "ddim",
         "views_on": ""}


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


def run_all(args, pipe, guide) -> list[Trial]:
    refs, seeds = reference_identities(args.references), list(range(1, args.seeds + 1))
    budgets = [2**k for k in range(int(math.log2(args.max_n)) + 1)]
    window = {"end": args.guide_end}
    for name in args.schedulers:  # warm-up, so the first method timed pays no one-off costs
        unguided(pipe, guide, refs[0], [0], Sampling(2, args.cfg, name))
    samples: list[Trial] = []
    started = time.time()
    for i, ref in enumerate(refs, 1):
        default = Sampling(args.steps, args.cfg, args.schedulers[0])
        on_particles = Sampling(args.steps, args.cfg, args.particle_scheduler)
        for seed in seeds:
            samples += best_of(pipe, guide, ref, seed, default, budgets)
            if args.particles and on_particles.scheduler != default.scheduler:  # best-of-N where the particles run
                samples += best_of(pipe, guide, ref, seed, on_particles, [n for n in budgets if n <= max(args.particles)])
            samples += [particles(pipe, guide, ref, seed, on_particles, k, decoder=d)
                        for d in args.decoders for k in args.particles]
            if args.guided_best_of:  # selection on top of guidance, at the first scale, through the default decoder
                samples += guided_best_of(pipe, guide, ref, seed, default, args.guided_best_of, args.scales[0],
                                          decoder=args.decoders[0], **window)
            if args.search and args.max_n >= 4:
                samples += searched(pipe, guide, ref, seed, default, [n for n in budgets if n >= 4])
                samples += [path_searched(pipe, guide, ref, seed, default, n) for n in budgets if n >= 4]
        for name in args.schedulers:
            sampling = Sampling(args.steps, args.cfg, name)
            samples += unguided(pipe, guide, ref, seeds, sampling)
            for scale in args.scales:
                samples += guided(pipe, guide, ref, seeds, sampling, scale, decoder=args.decoders[0], **window)
        for scale in args.scales:  # the defences one at a time against the defaults, on the default scheduler
            for method, change in VARIANTS.items():
                samples += guided(pipe, guide, ref, seeds, default, scale, method, decoder=args.decoders[0], **change,
                                  **window)
            for decoder in args.decoders[1:]:  # the defaults through another decoder (latent world: the full VAE)
                samples += guided(pipe, guide, ref, seeds, default, scale, decoder=decoder, **window)
        for name in args.views_on:  # where one plain view lets the guide run ahead of the judge
            samples += guided(pipe, guide, ref, seeds, Sampling(args.steps, args.cfg, name), max(args.scales),
                              "guidance+views", decoder=args.decoders[0], **VARIANTS["guidance+views"], **window)
        print(f"reference {i}/{len(refs)} ({IDENTITIES[ref].name}) done, {time.time() - started:.0f} s",
              file=sys.stderr, flush=True)
    return samples


def generator_report(pipe, judges: Judges, per_prompt: int, sampling: Sampling) -> str:
    """Unguided samples per prompt: recognisable (oracle), following the prompt, every identity
    present, realistic (FD). Pixel world: a prompt per category; latent world: per category and scene."""
    use_scheduler(pipe, sampling.scheduler)
    latent = judges.world == "latent"
    lines = ["| category | samples | category acc | background acc | side acc | all three | oracle conf | "
             "identities seen (of 8) | min share | FD |", "|---|---|---|---|---|---|---|---|---|---|"]
    all_images = []
    for c, name in enumerate(CATEGORIES):
        scenes = [(b, d) for b in range(len(BACKGROUNDS)) for d in range(len(SIDES))] if latent else [(None, None)]
        prompts = [name if b is None else f"{name} on a {BACKGROUNDS[b]} background, on the {SIDES[d]}"
                   for b, d in scenes for _ in range(per_prompt)]
        seeds = [10_000 * (c + 1) + i for i in range(len(prompts))]
        images = pipe(generator=generators(seeds), output_type="pt", **sampling.kwargs(prompts)).images
        all_images.append(images)
        scores = judges.score(images, [identities_of(c)[0]] * len(images))
        members = identities_of(c)
        counts = np.array([(scores.predicted == i).sum() for i in members])
        on_category = np.isin(scores.predicted, members)
        if latent:
            asked_b, asked_d = (np.repeat([x for x, _ in scenes], per_prompt), np.repeat([y for _, y in scenes], per_prompt))
            on_b, on_d = scores.background == asked_b, scores.side == asked_d
            scene = f"{on_b.mean():.3f} | {on_d.mean():.3f} | {(on_category & on_b & on_d).mean():.3f}"
        else:
            scene = "- | - | -"
        fd = frechet_distance(scores.features, judges.render_features)
        lines.append(f"| {name} | {len(images)} | {on_category.mean():.3f} | {scene} | {scores.confidence.mean():.3f} | "
                     f"{(counts > 0).sum()} | {counts.min() / len(images):.3f} | {fd:.2f} |")
    images = torch.cat(all_images)
    ids = np.arange(len(images)) % NUM_IDENTITIES  # as many renders, every identity equally often
    renders = judges.renders(ids, 9_000_000 + np.arange(len(ids)))
    floor = frechet_distance(judges.features(renders), judges.render_features)
    lines.append(f"| all | {len(images)} | | | | | | | | {frechet_distance(judges.features(images), judges.render_features):.2f} "
                 f"(fresh renders, same count: {floor:.2f}) |")
    return "\n".join(lines)


def group_key(s: Trial) -> tuple[str, str, str]:
    return s.method, s.budget, s.scheduler


def table(samples: list[Trial], judges: Judges, profiles: list[Profile], basis: str, sampling: Sampling) -> list[dict]:
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
        row.update(judges.summary(part, [refs[i] for i in idx], [samples[i].scenes for i in idx]))
        computes = [samples[i].compute for i in idx]
        row.update({k: float(np.mean([getattr(c, k) for c in computes])) for k in (*COUNTS, "seconds")})
        for profile in profiles:
            row[f"eq:{profile.name}"] = profile.equivalents(row, sampling.nfe, basis)
        rows.append(row)
    baseline = {r["scheduler"]: r for r in rows if r["method"] == "unguided"}
    for row in rows:
        base = baseline.get(row["scheduler"])
        row["guide_gain"] = row["guide_sim"] - base["guide_sim"] if base else float("nan")
        row["judge_gain"] = row["judge_sim"] - base["judge_sim"] if base else float("nan")
        row["judge_share"] = row["judge_gain"] / row["guide_gain"] if row["guide_gain"] > 1e-6 else float("nan")
    # The ceiling: a fresh render per task (not generated) in the prompted scene: the oracles' and the FD's best.
    tasks = list(dict.fromkeys((s.reference, s.seed) for s in samples))
    scenes = [task_scenes(judges.world, r, seed) for r, seed in tasks]
    named = judges.world == "latent"
    renders = fresh_renders([r for r, _ in tasks], 7_000_000, [x["prompt_background"] for x in scenes] if named else None,
                            [x["prompt_side"] for x in scenes] if named else None)
    ceiling = {"method": "renders", "budget": "-", "scheduler": "-"}
    ceiling.update(judges.summary(judges.score(renders, [r for r, _ in tasks]), [r for r, _ in tasks], scenes))
    ceiling.update({k: 0 for k in COUNTS}, guide_gain=float("nan"), judge_gain=float("nan"),
                   judge_share=float("nan"), seconds=0.0, **{f"eq:{p.name}": 0.0 for p in profiles})
    return rows + [ceiling]


def fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "nan"
        if float(value).is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.4g}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def write_tables(rows: list[dict], columns: list[str], out: Path, header: str) -> None:
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: row[k] for k in columns} for row in rows)
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row[k]) for k in columns) + " |" for row in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pareto(rows: list[dict], path: Path, default_scheduler: str, costs: list[tuple[str, callable]], title: str) -> None:
    """Oracle identity accuracy against each cost: a line per method (per scheduler for guidance)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(costs), figsize=(6 * len(costs), 4.5), squeeze=False)
    lines: dict[str, list[dict]] = {}  # each guided line starts at unguided on its scheduler
    for row in rows:
        if row["method"].startswith(("best-of-n", "noise-search", "path-search", "particles")):
            where = "" if row["scheduler"] == default_scheduler else f" ({row['scheduler']})"
            lines.setdefault(row["method"] + where, []).append(row)
        elif row["method"] != "renders":
            guided_methods = {r["method"] for r in rows if r["method"].startswith("guidance")
                              and r["scheduler"] == row["scheduler"]}
            for method in (guided_methods if row["method"] == "unguided" else {row["method"]}):
                lines.setdefault(f"{method} ({row['scheduler']})", []).append(row)
    for axis, (label, cost) in zip(axes[0], costs):
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
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grids(samples: list[Trial], rows: list[dict], out: Path, default_scheduler: str) -> None:
    """One grid per method, at its most accurate budget: a row per reference (reference first)."""
    from PIL import Image

    world = samples[0].world
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
            tiles = [reference_image(ref, world)] + [s.image for s in chosen if s.reference == ref]
            for j, tile in enumerate(tiles):
                x = j * (size + gap) + (gap if j else 0)
                canvas[i * (size + gap):i * (size + gap) + size, x:x + size] = to_uint8(tile[None])[0]
        name = f"grid_{method}.png"
        Image.fromarray(canvas).resize((canvas.shape[1] * 3, canvas.shape[0] * 3), Image.NEAREST).save(out / name)


def save_samples(samples: list[Trial], out: Path) -> None:
    """``samples.npz``: every sample with its task, method, counts per component and scene encodings
    (background 0 flat, 1 gradient, 2 textured; side 0 left, 1 right; -1 not named)."""
    scenes = [s.scenes for s in samples]
    np.savez_compressed(
        out / "samples.npz",
        images=to_uint8(torch.stack([s.image for s in samples])),
        reference_identity=np.array([s.reference for s in samples]),
        category=np.array([s.category for s in samples]),
        method=np.array([s.method for s in samples]),
        budget=np.array([s.budget for s in samples]),
        scheduler=np.array([s.scheduler for s in samples]),
        seed=np.array([s.seed for s in samples]),
        world=np.array([s.world for s in samples]),
        seconds=np.array([s.compute.seconds for s in samples]),
        **{k: np.array([getattr(s.compute, k) for s in samples], dtype=np.int64) for k in COUNTS},
        **{k: np.array([x[k] for x in scenes], dtype=np.int64) for k in scenes[0]},
    )
    refs = sorted({s.reference for s in samples})
    world = samples[0].world
    np.savez_compressed(out / "references.npz", images=to_uint8(torch.stack([reference_image(r, world) for r in refs])),
                        identity=np.array(refs))


def render_set(per_identity: int, path: Path, world: str) -> None:
    """Fresh renders; in the latent world each on a named scene (every scene equally often)."""
    ids = np.repeat(np.arange(NUM_IDENTITIES), per_identity)
    backgrounds, sides = balanced_scenes(len(ids)) if world == "latent" else (None, None)
    images = fresh_renders(ids.tolist(), 300_000_000, backgrounds, sides)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"background": backgrounds, "side": sides} if world == "latent" else {}
    np.savez_compressed(path, images=to_uint8(images), identity=ids,
                        category=np.array([IDENTITIES[i].category for i in ids]), **extra)
    print(f"wrote {len(ids)} renders ({per_identity} per identity) to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (or .npz file with --render-set)")
    parser.add_argument("--world", choices=("pixel", "latent"), default="pixel")
    parser.add_argument("--quick", action="store_true",
                        help="every method at small budgets: 4 references × 4 seeds, best-of up to 4, one scale, DDIM")
    parser.add_argument("--references", type=int, help=f"default {FULL['references']} ({QUICK['references']} quick)")
    parser.add_argument("--seeds", type=int, help=f"default {FULL['seeds']} ({QUICK['seeds']} quick)")
    parser.add_argument("--max-n", type=int, help="largest best-of-N budget, a power of 2 (default 32; 4 quick)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: 2 pixel, 3 latent)")
    parser.add_argument("--scales", help="identity guidance scales (default 0.5,1,2,4; 3 quick)")
    parser.add_argument("--guide-end", type=float, default=1.0, help="guided part of the steps: [0, END)")
    parser.add_argument("--particles", help="particle-steering budgets k ('' = none; default 2,4,8,16; 2,4 quick)")
    parser.add_argument("--particle-scheduler", help="the sampler of particle steering (default: the first of "
                        "--schedulers); best-of-N runs there too")
    parser.add_argument("--guided-best-of", default="", help="best-of-n budgets over guided samples (at the first "
                        "scale, the first decoder), e.g. 1,2,4 ('' = none)")
    parser.add_argument("--decoders", help="latent world: what guidance and particles decode with, first = the "
                        f"default's (of {', '.join(DECODERS)}; default tiny,full)")
    parser.add_argument("--no-search", dest="search", action="store_false", help="skip noise search (zero-order and paths)")
    parser.add_argument("--schedulers", help=f"comma-separated, first = the default; of {', '.join(SCHEDULERS)} "
                        "(default all; ddim quick)")
    parser.add_argument("--views-on", help="schedulers (besides the default) that also get the guidance+views row "
                        "(default euler,flow-euler; none quick)")
    parser.add_argument("--realism-samples", type=int, help="unguided samples per prompt for the realism table "
                        "(default 64 pixel, 8 latent; a third of that with --quick)")
    parser.add_argument("--profile", type=Path, action="append", default=[],
                        help="a cost profile (benchmarks/profiles/*.json): price every sample in unguided-sample "
                        "equivalents; repeat for several")
    parser.add_argument("--price-by", choices=BASES, default="flops", help="what a profile's component costs are")
    parser.add_argument("--render-set", type=int, metavar="N", help="write N fresh renders per identity and stop")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.render_set is not None:
        render_set(args.render_set, args.out, args.world)
        return 0
    for key, value in (QUICK if args.quick else FULL).items():  # what was not given explicitly
        if getattr(args, key) is None:
            setattr(args, key, value)
    profiles = [Profile.load(p) for p in args.profile]
    latent = args.world == "latent"
    args.cfg = args.cfg if args.cfg is not None else (3.0 if latent else 2.0)
    args.decoders = (args.decoders or ("tiny,full" if latent else "full")).split(",")
    if not latent and args.decoders != ["full"]:
        parser.error("--decoders: the pixel world has one decoder (its map to [0, 1])")
    if any(d not in DECODERS for d in args.decoders):
        parser.error(f"--decoders: choose from {', '.join(DECODERS)}")
    args.scales = [float(x) for x in str(args.scales).split(",")]
    args.particles = [int(x) for x in str(args.particles).split(",") if x]
    args.guided_best_of = [int(x) for x in args.guided_best_of.split(",") if x]
    args.schedulers = args.schedulers.split(",")
    args.views_on = [x for x in args.views_on.split(",") if x and x != args.schedulers[0]]
    args.particle_scheduler = args.particle_scheduler or args.schedulers[0]
    for name in args.schedulers + args.views_on + [args.particle_scheduler]:
        if name not in SCHEDULERS:
            parser.error(f"unknown scheduler {name!r}; one of {', '.join(SCHEDULERS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pipe = (LatentWorldPipeline if latent else IdentityWorldPipeline).from_weights()
    guide = load_scorer("proving-guide", device="cpu")  # through the scorer registry, like any user's scorer
    judges = Judges(guide=guide, world=args.world)
    per_prompt = args.realism_samples or ((8 if latent else 64) // (3 if args.quick else 1))
    default = Sampling(args.steps, args.cfg, args.schedulers[0])
    realism = generator_report(pipe, judges, per_prompt, default)
    samples = run_all(args, pipe, guide)
    rows = table(samples, judges, profiles, args.price_by, default)
    columns = COLUMNS + [f"eq:{p.name}" for p in profiles]
    prompts = ("categories and scenes: every task asks for a background and a side other than the reference's"
               if latent else f"categories ({', '.join(CATEGORIES)})")
    header = (f"Proving ground, {args.world} world: {args.references} references × {args.seeds} seeds, {args.steps} steps, "
              f"CFG {args.cfg:g}; prompts = {prompts}; guided by proving-guide, judged by the oracles and proving-judge; "
              f"best-of-n on {args.schedulers[0]}; total {time.time() - started:.0f} s")
    if profiles:
        header += (f"\n\nCost in unguided-sample equivalents (eq:PROFILE, priced by {args.price_by}; an unguided sample = "
                   f"{default.nfe} denoiser passes + 1 decode) under: "
                   + "; ".join(f"{p.name} ({p.family} at {p.size} px, scorer {p.scorer})" for p in profiles))
    header += f"\n\nGenerator, unguided ({args.schedulers[0]}), per prompt:\n\n{realism}\n\nSteering:"
    write_tables(rows, columns, args.out, header)
    costs = [("seconds per sample (the toy, this CPU)", lambda r: r["seconds"]),
             ("image-passes per sample (every component)", lambda r: sum(r[k] for k in COUNTS))]
    title = f"Proving ground ({args.world} world): oracle identity accuracy vs compute"
    pareto(rows, args.out / "pareto.png", args.schedulers[0], costs, title)
    for p in profiles:
        pareto(rows, args.out / f"pareto_{p.name}.png", args.schedulers[0],
               [(f"unguided-sample equivalents under {p.name}", lambda r, p=p: r[f"eq:{p.name}"])], title)
    grids(samples, rows, args.out, args.schedulers[0])
    save_samples(samples, args.out)
    print(f"wrote {args.out}/table.md, table.csv, pareto*.png, grid_*.png, samples.npz, references.npz "
          f"in {time.time() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
