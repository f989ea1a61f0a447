"""``idguide`` command line: score images against a reference, rank a folder, list scorers."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

import torch

from .arguments import add_scorer_options, batch_size, finite_float, positive_int, scorer_from_args
from .evaluation.cli import add_parser as add_eval_parser
from .scorers import Embedding, ImageInputError, Scorer, WeightsError, available_scorers, load_image
from .scorers.idsim import IdSimScorer
from .scorers.images import check_image, list_images
from .scorers.ranking import rank
from .scorers.registry import resolve_device, resolve_name
from .scorers.weights import set_interface


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too (``idguide: error: …``, exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"idguide: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="idguide", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or IDGUIDE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    add_scorer_options(common)
    common.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    score = sub.add_parser("score", parents=[common], help="score images against a reference image")
    score.add_argument("reference", type=Path)
    score.add_argument("images", type=Path, nargs="+")

    rank = sub.add_parser("rank", parents=[common], help="rank the images of a folder against a reference")
    rank.add_argument("reference", type=Path)
    rank.add_argument("folder", type=Path)
    rank.add_argument("--top-k", type=positive_int, help="keep the K most similar images")
    rank.add_argument("--threshold", type=finite_float, help="keep images with similarity >= T")

    sub.add_parser("list", help="list the available scorers")
    add_eval_parser(sub)
    return parser


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


def one_line(error: BaseException) -> str:
    """An exception as one line; the type is named unless it is one of the expected kinds."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, TypeError, OSError, WeightsError, ImageInputError)):
        return text
    return f"{type(error).__name__}: {text} (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_interface("cli")
    debug = getattr(args, "debug", False) or os.environ.get("IDGUIDE_DEBUG", "") not in ("", "0")
    try:
        return run(args)
    except KeyboardInterrupt as interrupt:
        kept = f": {interrupt}" if str(interrupt) else ""
        print(f"idguide: interrupted{kept}", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"idguide: error: {one_line(error)}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name, description in available_scorers().items():
            print(f"{name:22} {description}")
        return 0
    if args.command == "eval":
        from .evaluation.cli import run as run_eval

        return run_eval(args)
    # Everything cheap first: names, device, thresholds, every image, then the weights.
    if args.command == "rank" and args.threshold is not None and args.threshold > 1:
        raise ValueError(f"--threshold {args.threshold:g} can never be met: similarities are at most 1")
    resolve_name(args.metric)
    resolve_device(args.device)
    if args.command == "rank":
        paths = [p for p in list_images(args.folder) if p.resolve() != args.reference.resolve()]
        if not paths:
            raise ImageInputError(f"no images in {args.folder}")
    else:
        paths = list(args.images)
    for path in [args.reference, *paths]:
        check_image(path)
    scorer = scorer_from_args(args)
    with torch.inference_mode():
        rows = results(scorer, args.reference, paths, batch_size(args, scorer))
    if args.command == "rank":
        scores = [r["similarity"] for r in rows]
        for position, i in enumerate(rank(scores).kept, 1):  # ranks count every image
            rows[i]["rank"] = position
        rows = [rows[i] for i in rank(scores, args.top_k, args.threshold, on_empty="error").kept]
    print_rows(rows, args.json, ranked=args.command == "rank")
    return 0


if __name__ == "__main__":
    sys.exit(main())
