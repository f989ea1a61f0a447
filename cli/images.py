"""``idguide score``, ``idguide rank``, ``idguide list``: images against a reference, from files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..scorers import Embedding, ImageInputError, Scorer, available_scorers, load_image
from ..scorers.idsim import IdSimScorer
from ..scorers.images import check_image, list_images
from ..scorers.ranking import rank
from ..scorers.registry import resolve_device, resolve_name
from .arguments import batch_size, finite_float, positive_int, scorer_from_args


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """``idguide score``, ``idguide rank`` and ``idguide list``."""
    score = sub.add_parser("score", parents=[common], help="score images against a reference image")
    score.add_argument("reference", type=Path)
    score.add_argument("images", type=Path, nargs="+")
    score.set_defaults(func=run_score)

    ranking = sub.add_parser("rank", parents=[common], help="rank the images of a folder against a reference")
    ranking.add_argument("reference", type=Path)
    ranking.add_argument("folder", type=Path)
    ranking.add_argument("--top-k", type=positive_int, help="keep the K most similar images")
    ranking.add_argument("--threshold", type=finite_float, help="keep images with similarity >= T")
    ranking.set_defaults(func=run_rank)

    sub.add_parser("list", help="list the available scorers").set_defaults(func=run_list)


def embed_files(scorer: Scorer, paths: Sequence[Path], batch_size: int) -> Embedding:
    """Embed files in batches, with a progress bar when there are many."""
    from tqdm.auto import tqdm

    with tqdm(total=len(paths), desc="scoring", unit="img", disable=len(paths) <= max(batch_size, 4), file=sys.stderr) as bar:
        return scorer.embed_batches(paths, batch_size, load_image, bar.update)


def results(scorer: Scorer, reference: Path, paths: Sequence[Path], batch_size: int) -> list[dict]:
    ref = scorer.embed(load_image(reference)[None].to(scorer.device))
    similarity = scorer.similarity(ref, embed_files(scorer, paths, batch_size)).cpu()
    rows = []
    for path, value in zip(paths, similarity.tolist()):
        row = {"path": str(path), "similarity": round(value, 6)}
        if isinstance(scorer, IdSimScorer):
            row["distance"] = round(1.0 - value, 6)
        rows.append(row)
    return rows


def print_rows(rows: list[dict], as_json: bool, ranked: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    columns = (["rank"] if ranked else []) + ["similarity"] + (["distance"] if rows and "distance" in rows[0] else [])
    print("  ".join(f"{c:>10}" for c in columns) + "  image")
    for row in rows:
        cells = [f"{row['rank']:>10}"] if ranked else []
        cells += [f"{row[c]:>10.4f}" for c in columns if c != "rank"]
        print("  ".join(cells) + "  " + row["path"])


def run_list(args: argparse.Namespace) -> int:
    for name, description in available_scorers().items():
        print(f"{name:22} {description}")
    return 0


def check_scorer_names(args: argparse.Namespace) -> None:
    """The cheap checks, before any image or weights are read."""
    resolve_name(args.metric)
    resolve_device(args.device)


def run_score(args: argparse.Namespace) -> int:
    check_scorer_names(args)
    return score_files(args, list(args.images))


def run_rank(args: argparse.Namespace) -> int:
    if args.threshold is not None and args.threshold > 1:
        raise ValueError(f"--threshold {args.threshold:g} can never be met: similarities are at most 1")
    check_scorer_names(args)
    found = list_images(args.folder)
    paths = [p for p in found if p.resolve() != args.reference.resolve()]
    if not paths:
        raise ImageInputError(f"the only image in {args.folder} is the reference {args.reference}: nothing to rank"
                              if found else f"no images in {args.folder}")
    return score_files(args, paths, ranked=True)


def score_files(args: argparse.Namespace, paths: list[Path], ranked: bool = False) -> int:
    """Every image checked before the weights load."""
    for path in [args.reference, *paths]:
        check_image(path)
    scorer = scorer_from_args(args)
    with torch.inference_mode():
        rows = results(scorer, args.reference, paths, batch_size(args, scorer))
    if ranked:
        scores = [r["similarity"] for r in rows]
        for position, i in enumerate(rank(scores).kept, 1):  # ranks count every image
            rows[i]["rank"] = position
        rows = [rows[i] for i in rank(scores, args.top_k, args.threshold, on_empty="error").kept]
    print_rows(rows, args.json, ranked=ranked)
    return 0
