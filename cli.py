"""``idguide`` command line: score images against a reference, rank a folder, list scorers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import torch

from .scorers import Embedding, ImageInputError, Scorer, WeightsError, available_scorers, load_image, load_scorer
from .scorers.idsim import IdSimScorer
from .scorers.images import list_images
from .scorers.ranking import rank


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idguide", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    add_scorer_options(common)
    common.add_argument("--json", action="store_true", help="print JSON lines instead of a table")

    score = sub.add_parser("score", parents=[common], help="score images against a reference image")
    score.add_argument("reference", type=Path)
    score.add_argument("images", type=Path, nargs="+")

    rank = sub.add_parser("rank", parents=[common], help="rank the images of a folder against a reference")
    rank.add_argument("reference", type=Path)
    rank.add_argument("folder", type=Path)
    rank.add_argument("--top-k", type=int, help="keep the K most similar images")
    rank.add_argument("--threshold", type=float, help="keep images with similarity >= T")

    sub.add_parser("list", help="list the available scorers")
    from .evaluation.cli import add_parser

    add_parser(sub)
    return parser


def add_scorer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", required=True, help="scorer name (see 'idguide list')")
    parser.add_argument("--weights", help="local folder/file in the official layout, or a Hugging Face repo id")
    parser.add_argument("--mode", choices=["cls", "patch", "joint"], help="ID-Sim mode (default cls)")
    parser.add_argument("--patch-distance", choices=["pooled", "sinkhorn"], help="ID-Sim patch distance")
    parser.add_argument("--backbone", help="ID-Sim: backbone .pth file or Hugging Face DINOv2 folder/repo")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="weights precision (default fp32)")
    parser.add_argument("--batch-size", type=int,
                        help="images per forward pass (default: 8 on a GPU, 1 on the CPU, where batching is slower)")


def load_from_args(args: argparse.Namespace) -> Scorer:
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    return load_scorer(args.metric, weights=args.weights, device=args.device, dtype=args.dtype, **scorer_options(args))


def scorer_options(args: argparse.Namespace) -> dict:
    names = {"mode": args.mode, "patch_distance": args.patch_distance, "backbone": args.backbone}
    return {k: v for k, v in names.items() if v is not None}


def embed_files(scorer: Scorer, paths: Sequence[Path], batch_size: int) -> Embedding:
    """Embed files in batches, with a progress bar when there are many."""
    from tqdm.auto import tqdm

    parts = []
    device = scorer.device
    with tqdm(total=len(paths), desc="scoring", unit="img", disable=len(paths) <= max(batch_size, 4), file=sys.stderr) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = [load_image(p).to(device) for p in paths[start : start + batch_size]]
            parts.append(scorer.embed(chunk))
            bar.update(len(chunk))
    return Embedding.cat(parts)


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for name, description in available_scorers().items():
            print(f"{name:22} {description}")
        return 0
    if args.command == "eval":
        from .evaluation.cli import run

        try:
            return run(args)
        except (WeightsError, ImageInputError, ValueError) as error:
            print(f"idguide: error: {error}", file=sys.stderr)
            return 2
    try:
        if args.command == "rank":
            paths = list_images(args.folder)
            paths = [p for p in paths if p.resolve() != args.reference.resolve()]
            if not paths:
                raise ImageInputError(f"no images in {args.folder}")
        else:
            paths = list(args.images)
        load_image(args.reference)  # fail on a bad reference before loading any weights
        scorer = load_from_args(args)
        with torch.inference_mode():
            batch_size = args.batch_size or (8 if scorer.device.type == "cuda" else 1)
            rows = results(scorer, args.reference, paths, batch_size)
    except (WeightsError, ImageInputError, ValueError, TypeError) as error:
        print(f"idguide: error: {error}", file=sys.stderr)
        return 2
    if args.command == "rank":
        scores = [r["similarity"] for r in rows]
        for position, i in enumerate(rank(scores).kept, 1):  # ranks count every image
            rows[i]["rank"] = position
        try:
            rows = [rows[i] for i in rank(scores, args.top_k, args.threshold, on_empty="error").kept]
        except ValueError as error:
            print(f"idguide: {error}", file=sys.stderr)
            return 1
    print_rows(rows, args.json, ranked=args.command == "rank")
    return 0


if __name__ == "__main__":
    sys.exit(main())
