"""``idguide eval …``: the evaluation protocols from the command line."""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import dreambench as db
from . import report, stats


def add_parser(sub) -> None:
    evaluate = sub.add_parser("eval", help="evaluation protocols (DreamBench++, verification, retrieval, ...)")
    protocols = evaluate.add_subparsers(dest="protocol", required=True)

    p = protocols.add_parser("dreambench", help="metric-vs-human alignment on DreamBench++ ratings")
    p.add_argument("--ratings", type=Path, required=True,
                   help="DreamBench++ human ratings (a folder holding group1/ and group2/ of <method>-cp.json)")
    p.add_argument("--metric-scores", action="append", default=[], metavar="NAME=DIR",
                   help="a metric's rating files (<method>.json per method); repeat for several metrics")
    p.add_argument("--category", default="all", choices=[*db.CATEGORIES, "all"],
                   help="one category, or all: each category and every image together (default)")
    p.add_argument("--out", type=Path, help="write CSV, Markdown and plots here")

    p = protocols.add_parser("dreambench-score", help="score DreamBench++-layout samples into rating files")
    from ..cli import add_scorer_options

    add_scorer_options(p)
    p.add_argument("--samples", type=Path, required=True, help="<subject key>/<i>.png of one method")
    p.add_argument("--references", type=Path, required=True, help="one image per subject, named by its key")
    p.add_argument("--method", help="rating file name (default: the samples folder's name)")
    p.add_argument("--out", type=Path, required=True)

    p = protocols.add_parser("verification", help="AP and ROC-AUC of same/different pairs (Subjects2k, PetFace)")
    p.add_argument("scores", type=Path, help="CSV with columns label (1 same, 0 different) and score")

    p = protocols.add_parser("retrieval", help="mAP, ROC-AUC and nDCG (PODS, DeepFashion2, AerialCattle)")
    p.add_argument("scores", type=Path, help="CSV with columns query, query_id, gallery, gallery_id, score")
    p.add_argument("--k", type=int, help="nDCG@k (default: the whole gallery)")

    p = protocols.add_parser("triplets", help="triplet accuracy (CUTE; per split when a split column exists)")
    p.add_argument("scores", type=Path, help="CSV with columns positive, negative [, split]")

    p = protocols.add_parser("ssr-pa", help="NearID's SSR and PA")
    p.add_argument("scores", type=Path, help="CSV with columns sample, positive, negative (one row per trial)")


def read_csv(path: Path, columns: list[str]) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ValueError(f"score file not found: {path}") from None
    missing = [c for c in columns if not rows or c not in rows[0]]
    if not rows:
        raise ValueError(f"{path}: no rows")
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(rows[0])})")
    return rows


def numbers(rows: list[dict], column: str, path: Path) -> np.ndarray:
    try:
        return np.array([float(r[column]) for r in rows])
    except ValueError as error:
        raise ValueError(f"{path}: column {column}: {error}") from None


def run(args: argparse.Namespace) -> int:
    if args.protocol == "dreambench":
        return run_dreambench(args)
    if args.protocol == "dreambench-score":
        from .scoring import score_samples

        score_samples(args)
        return 0
    if args.protocol == "verification":
        rows = read_csv(args.scores, ["label", "score"])
        labels, scores = numbers(rows, "label", args.scores), numbers(rows, "score", args.scores)
        table = [["pairs", str(len(rows))], ["AP", f"{stats.average_precision(labels, scores):.4f}"],
                 ["ROC-AUC", f"{stats.roc_auc(labels, scores):.4f}"]]
    elif args.protocol == "retrieval":
        rows = read_csv(args.scores, ["query", "query_id", "gallery", "gallery_id", "score"])
        queries = list(dict.fromkeys(r["query"] for r in rows))
        gallery = list(dict.fromkeys(r["gallery"] for r in rows))
        qi, gi = {q: i for i, q in enumerate(queries)}, {g: i for i, g in enumerate(gallery)}
        matrix = np.full((len(queries), len(gallery)), np.nan)
        query_ids, gallery_ids = {}, {}
        for r in rows:
            matrix[qi[r["query"]], gi[r["gallery"]]] = float(r["score"])
            query_ids[r["query"]], gallery_ids[r["gallery"]] = r["query_id"], r["gallery_id"]
        if np.isnan(matrix).any():
            q, g = np.argwhere(np.isnan(matrix))[0]
            raise ValueError(f"{args.scores}: no score for query {queries[q]!r} and gallery {gallery[g]!r} "
                             f"({int(np.isnan(matrix).sum())} pairs missing)")
        q_ids, g_ids = [query_ids[q] for q in queries], [gallery_ids[g] for g in gallery]
        table = [["queries", str(len(queries))], ["gallery", str(len(gallery))],
                 ["mAP", f"{stats.retrieval_map(matrix, q_ids, g_ids):.4f}"],
                 ["ROC-AUC", f"{stats.retrieval_auc(matrix, q_ids, g_ids):.4f}"],
                 [f"nDCG@{args.k}" if args.k else "nDCG", f"{stats.ndcg(matrix, q_ids, g_ids, args.k):.4f}"]]
    elif args.protocol == "triplets":
        rows = read_csv(args.scores, ["positive", "negative"])
        splits = defaultdict(list)
        for r in rows:
            splits[r.get("split") or "all"].append(r)
        table = [[f"accuracy ({name}, {len(part)} triplets)",
                  f"{stats.triplet_accuracy(numbers(part, 'positive', args.scores), numbers(part, 'negative', args.scores)):.4f}"]
                 for name, part in sorted(splits.items())]
    else:
        rows = read_csv(args.scores, ["sample", "positive", "negative"])
        trials = defaultdict(list)
        for r in rows:
            trials[r["sample"]].append((float(r["positive"]), float(r["negative"])))
        counts = {len(t) for t in trials.values()}
        if len(counts) != 1:
            raise ValueError(f"{args.scores}: samples have different numbers of trials ({sorted(counts)})")
        pairs = np.array(list(trials.values()))  # [samples, trials, 2]
        ssr, pa = stats.ssr_pa(pairs[..., 0], pairs[..., 1])
        table = [["samples", str(len(trials))], ["trials per sample", str(counts.pop())],
                 ["SSR", f"{100 * ssr:.2f}"], ["PA", f"{100 * pa:.2f}"]]
    print(report.text_table(["measure", "value"], table))
    return 0


def run_dreambench(args: argparse.Namespace) -> int:
    group1, group2 = (db.read_folder(g, "-cp") for g in db.find_groups(args.ratings))
    metrics = {}
    for item in args.metric_scores:
        name, _, folder = item.partition("=")
        if not name or not folder:
            raise ValueError(f"--metric-scores takes NAME=DIR, got {item!r}")
        metrics[name] = db.read_folder(Path(folder), allow_missing=True)
    categories = [*db.CATEGORIES, "all"] if args.category == "all" else [args.category]
    results = {c: db.human_alignment(group1, group2, metrics, c) for c in categories}
    pooled = {name: db.idsim_protocol(group1, group2, files) for name, files in metrics.items()}

    for category, result in results.items():
        print(f"\nDreamBench++ {category}: Pearson r per method (a metric: mean of its r with each annotator "
              "group; Human-Human: group 1 vs group 2); Fisher-z mean over methods")
        print(report.text_table(*report.alignment_rows(result)))
    if pooled:
        print("\nID-Sim protocol: animals + objects, all methods pooled, against the mean human rating")
        print(report.text_table(*report.pooled_rows(pooled)))
    notes = sorted(set(line for r in results.values() for line in report.renames(r)))
    notes += [f"dropped {d}" for p in pooled.values() for d in p.dropped]
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    if args.out:
        write_outputs(args.out, results, pooled, metrics, group1, group2, notes)
        print(f"\nwritten to {args.out}/", file=sys.stderr)
    return 0


def write_outputs(out: Path, results, pooled, metrics, group1, group2, notes) -> None:
    from .plots import category_bars, scatter

    out.mkdir(parents=True, exist_ok=True)
    markdown = ["# DreamBench++ metric-vs-human alignment", ""]
    for category, result in results.items():
        header, rows = report.alignment_rows(result)
        (out / f"dreambench_{category}.csv").write_text(report.csv_table(header, rows))
        markdown += [f"## {category}", "", report.markdown_table(header, rows), ""]
    if pooled:
        header, rows = report.pooled_rows(pooled)
        (out / "idsim_protocol.csv").write_text(report.csv_table(header, rows))
        markdown += ["## ID-Sim protocol (animals + objects, pooled; Spearman / Kendall tau-b vs mean human)", "",
                     report.markdown_table(header, rows), ""]
    if notes:
        markdown += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    (out / "dreambench.md").write_text("\n".join(markdown))
    save(category_bars(results), out / "alignment_by_category.png")
    category = next(iter(results)) if len(results) == 1 else "all"
    for name, files in metrics.items():
        categories = db.CATEGORIES if category == "all" else [category]
        scores, human, _, _ = db.pool(group1, group2, files, categories)
        save(scatter(name, scores, human, stats.pearson(scores, human), category), out / f"scatter_{name}.png")


def save(figure, path: Path) -> None:
    from .draw import pyplot

    figure.savefig(path)
    pyplot().close(figure)
