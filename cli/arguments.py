"""Scorer options on the command line, shared by ``idguide score/rank`` and ``idguide eval dreambench-score``.

The one place that turns an argparse namespace into library calls; the library itself takes plain
arguments.
"""

from __future__ import annotations

import argparse

from ..scorers import Scorer, load_scorer
from ..scorers.registry import default_batch_size


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so a bad value fails before anything is loaded)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# Library parameters a scorer error may name, and the flags that set them here.
SCORER_FLAGS = {"mode": "--mode", "patch_distance": "--patch-distance", "backbone": "--backbone",
                "weights": "--weights", "batch_size": "--batch-size"}


def add_scorer_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", required=True, help="scorer name (see 'idguide list')")
    parser.add_argument("--weights", help="local folder/file in the official layout, or a Hugging Face repo id")
    parser.add_argument("--mode", choices=["cls", "patch", "joint"], help="ID-Sim mode (default cls)")
    parser.add_argument("--patch-distance", choices=["pooled", "sinkhorn"],
                        help="ID-Sim, modes patch and joint: how patch tokens are compared (default pooled)")
    parser.add_argument("--backbone", help="ID-Sim: backbone .pth file or Hugging Face DINOv2 folder/repo")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="weights precision (default fp32)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="images per forward pass (default: 8 on a GPU, 1 on the CPU, where batching is slower)")
    parser.set_defaults(flags=SCORER_FLAGS)


def scorer_options(args: argparse.Namespace) -> dict:
    names = {"mode": args.mode, "patch_distance": args.patch_distance, "backbone": args.backbone}
    return {k: v for k, v in names.items() if v is not None}


def scorer_from_args(args: argparse.Namespace, device: str | None = None) -> Scorer:
    return load_scorer(args.metric, weights=args.weights, device=device or args.device, dtype=args.dtype,
                       **scorer_options(args))


def batch_size(args: argparse.Namespace, scorer: Scorer) -> int:
    return args.batch_size or default_batch_size(scorer.device)
