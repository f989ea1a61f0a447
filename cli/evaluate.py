"""``idguide eval …``: the evaluation protocols from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..evaluation import dreambench as db
from ..evaluation import report, stats
from ..evaluation.scorefiles import labels, numbers, read_csv, retrieval_matrix
from ..scorers import checks
from ..scorers.errors import ParameterError
from ..scorers.registry import resolve_device, resolve_name
from .arguments import SCORER_FLAGS, add_scorer_options, batch_size, positive_int, scorer_from_args


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
    p.set_defaults(func=run_dreambench)

    p = protocols.add_parser("dreambench-score", help="score DreamBench++-layout samples into rating files")
    add_scorer_options(p)
    p.add_argument("--samples", type=Path, required=True, help="<subject key>/<i>.png of one method")
    p.add_argument("--references", type=Path, required=True, help="one image per subject, named by its key")
    p.add_argument("--method", help="rating file name (default: the samples folder's name)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_dreambench_score,
                   flags={**SCORER_FLAGS, "samples": "--samples", "references": "--references", "method": "--method"})

    p = protocols.add_parser("verification", help="AP and ROC-AUC of same/different pairs (Subjects2k, PetFace)")
    p.add_argument("scores", type=Path, help="CSV with columns label (1 same, 0 different) and score")
    p.set_defaults(func=run_verification)

    p = protocols.add_parser("retrieval", help="mAP, ROC-AUC and nDCG (PODS, DeepFashion2, AerialCattle)")
    p.add_argument("scores", type=Path, help="CSV with columns query, query_id, gallery, gallery_id, score")
    p.add_argument("--k", type=positive_int, help="nDCG@k (default: the whole gallery)")
    p.set_defaults(func=run_retrieval)

    p = protocols.add_parser("triplets", help="triplet accuracy (CUTE; per split when a split column exists)")
    p.add_argument("scores", type=Path, help="CSV with columns positive, negative [, split]")
    p.set_defaults(func=run_triplets)

    p = protocols.add_parser("ssr-pa", help="NearID's SSR and PA")
    p.add_argument("scores", type=Path, help="CSV with columns sample, positive, negative (one row per trial)")
    p.set_defaults(func=run_ssr_pa)


def run_verification(args: argparse.Namespace) -> int:
    rows = read_csv(args.scores, ["label", "score"])
    same, scores = labels(rows, args.scores), numbers(rows, "score", args.scores)
    return show([["pairs", str(len(rows))], ["AP", f"{stats.average_precision(same, scores):.4f}"],
                 ["ROC-AUC", f"{stats.roc_auc(same, scores):.4f}"]])


def run_retrieval(args: argparse.Namespace) -> int:
    rows = read_csv(args.scores, ["query", "query_id", "gallery", "gallery_id", "score"])
    matrix, queries, gallery, q_ids, g_ids = retrieval_matrix(rows, args.scores)
    return show([["queries", str(len(queries))], ["gallery", str(len(gallery))],
                 ["mAP", f"{stats.retrieval_map(matrix, q_ids, g_ids):.4f}"],
                 ["ROC-AUC", f"{stats.retrieval_auc(matrix, q_ids, g_ids):.4f}"],
                 [f"nDCG@{args.k}" if args.k else "nDCG", f"{stats.ndcg(matrix, q_ids, g_ids, args.k):.4f}"]])


def run_triplets(args: argparse.Namespace) -> int:
    rows = read_csv(args.scores, ["positive", "negative"])
    splits = defaultdict(list)
    for r in rows:
        splits[r.get("split") or "all"].append(r)
    return show([[f"accuracy ({name}, {len(part)} triplets)",
                  f"{stats.triplet_accuracy(numbers(part, 'positive', args.scores), numbers(part, 'negative', args.scores)):.4f}"]
                 for name, part in sorted(splits.items())])


def run_ssr_pa(args: argparse.Namespace) -> int:
    rows = read_csv(args.scores, ["sample", "positive", "negative"])
    positive, negative = numbers(rows, "positive", args.scores), numbers(rows, "negative", args.scores)
    trials = defaultdict(list)
    for r, p, n in zip(rows, positive, negative):
        trials[r["sample"]].append((p, n))
    counts = {len(t) for t in trials.values()}
    if len(counts) != 1:
        raise ValueError(f"{args.scores}: samples have different numbers of trials ({sorted(counts)})")
    pairs = np.array(list(trials.values()))  # [samples, trials, 2]
    ssr, pa = stats.ssr_pa(pairs[..., 0], pairs[..., 1])
    return show([["samples", str(len(trials))], ["trials per sample", str(counts.pop())],
                 ["SSR", f"{100 * ssr:.2f}"], ["PA", f"{100 * pa:.2f}"]])


def show(table: list[list[str]]) -> int:
    print(report.text_table(["measure", "value"], table))
    return 0


def writable_folder(out: Path, option: str = "--out") -> Path:
    """Create ``out`` (or check it) before any work, so a bad --out fails first, in one line."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{option} {out} cannot be created ({error.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {out} is not writable")
    return out


def run_dreambench_score(args: argparse.Namespace) -> int:
    """Checks the folders, --out and the device before loading weights; shards under ``accelerate launch``."""
    from tqdm.auto import tqdm

    from ..evaluation.scoring import Layout, process_state, rating_name, score_layout

    method = rating_name(args.samples.resolve().name if args.method is None else args.method)
    layout = Layout(args.samples, args.references)
    writable_folder(args.out)
    resolve_name(args.metric)
    resolve_device(args.device)
    state = process_state()
    scorer = scorer_from_args(args, device=str(state.device) if state and args.device is None else None)
    main = state.is_main_process if state else True
    with tqdm(desc=f"scoring {method}", unit="img", file=sys.stderr, disable=not main) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        final = score_layout(scorer, layout, args.out, method, batch_size(args, scorer), state, progress)
    if main:
        print(f"wrote {final} ({len(layout.samples)} images)", file=sys.stderr)
    return 0


def run_dreambench(args: argparse.Namespace) -> int:
    folders = metric_folders(args.metric_scores)
    if args.out:
        writable_folder(args.out)
    group1, group2 = (db.read_folder(g, "-cp") for g in db.find_groups(args.ratings))
    metrics = {name: db.read_folder(folder, allow_missing=True) for name, folder in folders.items()}
    categories = [*db.CATEGORIES, "all"] if args.category == "all" else [args.category]
    results = {c: db.human_alignment(group1, group2, metrics, c) for c in categories}
    pooled = {name: db.idsim_protocol(group1, group2, files, f"metric {name}") for name, files in metrics.items()}

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


def metric_folders(items: list[str]) -> dict[str, Path]:
    """``--metric-scores NAME=DIR`` values: each name names a plot file (a plain name) and is given once."""
    folders: dict[str, Path] = {}
    for item in items:
        name, _, folder = item.partition("=")
        if not name or not folder:
            raise ValueError(f"--metric-scores takes NAME=DIR, got {item!r}")
        try:
            checks.file_name("NAME", name)
        except ParameterError as error:
            raise ValueError(f"--metric-scores {item}: the metric's {error}") from None
        if name in folders:
            raise ValueError(f"--metric-scores gives the metric {name!r} twice ({folders[name]} and {folder}); "
                             "name each metric once")
        folders[name] = Path(folder)
    return folders


def write_outputs(out: Path, results, pooled, metrics, group1, group2, notes) -> None:
    from ..evaluation.plots import category_bars, scatter

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
    from ..drawing import pyplot

    figure.savefig(path)
    pyplot().close(figure)
