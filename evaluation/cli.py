"""``idguide eval …``: the evaluation protocols from the command line."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..arguments import add_scorer_options, batch_size, positive_int, scorer_from_args
from ..scorers.registry import resolve_device, resolve_name
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
    add_scorer_options(p)
    p.add_argument("--samples", type=Path, required=True, help="<subject key>/<i>.png of one method")
    p.add_argument("--references", type=Path, required=True, help="one image per subject, named by its key")
    p.add_argument("--method", help="rating file name (default: the samples folder's name)")
    p.add_argument("--out", type=Path, required=True)

    p = protocols.add_parser("verification", help="AP and ROC-AUC of same/different pairs (Subjects2k, PetFace)")
    p.add_argument("scores", type=Path, help="CSV with columns label (1 same, 0 different) and score")

    p = protocols.add_parser("retrieval", help="mAP, ROC-AUC and nDCG (PODS, DeepFashion2, AerialCattle)")
    p.add_argument("scores", type=Path, help="CSV with columns query, query_id, gallery, gallery_id, score")
    p.add_argument("--k", type=positive_int, help="nDCG@k (default: the whole gallery)")

    p = protocols.add_parser("triplets", help="triplet accuracy (CUTE; per split when a split column exists)")
    p.add_argument("scores", type=Path, help="CSV with columns positive, negative [, split]")

    p = protocols.add_parser("ssr-pa", help="NearID's SSR and PA")
    p.add_argument("scores", type=Path, help="CSV with columns sample, positive, negative (one row per trial)")


EXTRA = "\0extra"  # where csv puts the values of a row longer than the header


def read_csv(path: Path, columns: list[str]) -> list[dict]:
    """Rows of a score CSV, each checked to be complete; errors name the file, row and column."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a CSV file with columns {', '.join(columns)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a BOM is not part of the header
            reader = csv.DictReader(f, restkey=EXTRA)
            header = reader.fieldnames or []
            rows = list(reader)
    except FileNotFoundError:
        raise ValueError(f"score file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV ({error})") from None
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: the header repeats a column ({', '.join(header)})")
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(header) or 'no header'})")
    if not rows:
        raise ValueError(f"{path}: no rows")
    for number, row in enumerate(rows, 2):
        if EXTRA in row:
            raise ValueError(f"{path}, row {number}: {len(header) + len(row[EXTRA])} values for "
                             f"{len(header)} columns")
        if any(row[c] is None for c in header):
            given = sum(row[c] is not None for c in header)
            raise ValueError(f"{path}, row {number}: {given} values for {len(header)} columns")
    return rows


def numbers(rows: list[dict], column: str, path: Path) -> np.ndarray:
    values = []
    for number, row in enumerate(rows, 2):
        text = row[column].strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{path}, row {number}, column {column!r}: {text!r} is not a number") from None
        if not np.isfinite(value):
            raise ValueError(f"{path}, row {number}, column {column!r}: {text!r} is not a finite number")
        values.append(value)
    return np.array(values)


def labels(rows: list[dict], path: Path) -> np.ndarray:
    for number, row in enumerate(rows, 2):
        if row["label"].strip() not in ("0", "1"):
            raise ValueError(f"{path}, row {number}, column 'label': {row['label']!r} is not 0 (different) or "
                             "1 (same)")
    return np.array([int(r["label"]) for r in rows])


def unique_ids(rows: list[dict], item: str, column: str, path: Path) -> dict[str, str]:
    """item name → its instance id; one item with two ids is an error naming both rows."""
    ids, first = {}, {}
    for number, row in enumerate(rows, 2):
        name, value = row[item], row[column]
        if name in ids and ids[name] != value:
            raise ValueError(f"{path}: {item} {name!r} has {column} {ids[name]!r} in row {first[name]} and "
                             f"{value!r} in row {number}")
        ids.setdefault(name, value)
        first.setdefault(name, number)
    return ids


def retrieval_matrix(rows: list[dict], path: Path) -> tuple[np.ndarray, list[str], list[str], list[str], list[str]]:
    scores = numbers(rows, "score", path)
    query_ids, gallery_ids = unique_ids(rows, "query", "query_id", path), unique_ids(rows, "gallery", "gallery_id", path)
    queries, gallery = list(query_ids), list(gallery_ids)
    qi, gi = {q: i for i, q in enumerate(queries)}, {g: i for i, g in enumerate(gallery)}
    matrix = np.full((len(queries), len(gallery)), np.nan)
    seen = {}
    for number, (row, score) in enumerate(zip(rows, scores), 2):
        pair = (row["query"], row["gallery"])
        if pair in seen:
            raise ValueError(f"{path}: query {pair[0]!r} and gallery {pair[1]!r} are scored twice "
                             f"(rows {seen[pair]} and {number})")
        seen[pair] = number
        matrix[qi[pair[0]], gi[pair[1]]] = score
    if np.isnan(matrix).any():
        q, g = np.argwhere(np.isnan(matrix))[0]
        raise ValueError(f"{path}: no score for query {queries[q]!r} and gallery {gallery[g]!r} "
                         f"({int(np.isnan(matrix).sum())} pairs missing)")
    instances = set(gallery_ids.values())
    lonely = [q for q in queries if query_ids[q] not in instances]
    if lonely:
        raise ValueError(f"{path}: {len(lonely)} queries have no gallery item of their instance, first "
                         f"{lonely[0]!r} (query_id {query_ids[lonely[0]]!r})")
    return matrix, queries, gallery, [query_ids[q] for q in queries], [gallery_ids[g] for g in gallery]


def run(args: argparse.Namespace) -> int:
    if args.protocol == "dreambench":
        return run_dreambench(args)
    if args.protocol == "dreambench-score":
        return run_dreambench_score(args)
    if args.protocol == "verification":
        rows = read_csv(args.scores, ["label", "score"])
        same, scores = labels(rows, args.scores), numbers(rows, "score", args.scores)
        table = [["pairs", str(len(rows))], ["AP", f"{stats.average_precision(same, scores):.4f}"],
                 ["ROC-AUC", f"{stats.roc_auc(same, scores):.4f}"]]
    elif args.protocol == "retrieval":
        rows = read_csv(args.scores, ["query", "query_id", "gallery", "gallery_id", "score"])
        matrix, queries, gallery, q_ids, g_ids = retrieval_matrix(rows, args.scores)
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
        positive, negative = numbers(rows, "positive", args.scores), numbers(rows, "negative", args.scores)
        trials = defaultdict(list)
        for r, p, n in zip(rows, positive, negative):
            trials[r["sample"]].append((p, n))
        counts = {len(t) for t in trials.values()}
        if len(counts) != 1:
            raise ValueError(f"{args.scores}: samples have different numbers of trials ({sorted(counts)})")
        pairs = np.array(list(trials.values()))  # [samples, trials, 2]
        ssr, pa = stats.ssr_pa(pairs[..., 0], pairs[..., 1])
        table = [["samples", str(len(trials))], ["trials per sample", str(counts.pop())],
                 ["SSR", f"{100 * ssr:.2f}"], ["PA", f"{100 * pa:.2f}"]]
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

    from .scoring import Layout, process_state, score_layout

    layout = Layout(args.samples, args.references)
    writable_folder(args.out)
    resolve_name(args.metric)
    resolve_device(args.device)
    method = args.method or args.samples.resolve().name
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
    if args.out:
        writable_folder(args.out)
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
    from ..drawing import pyplot

    figure.savefig(path)
    pyplot().close(figure)
