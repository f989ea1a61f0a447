"""The ``idguide`` command line: one parser, a sub-command per task, each dispatching to its
``func`` (``images``: score, rank, list; ``evaluate``: the evaluation protocols). Errors are one
line (``idguide: error: …``; ``--debug`` or ``IDGUIDE_DEBUG=1`` for the traceback)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Sequence

from ..scorers import ImageInputError, WeightsError
from ..scorers.errors import ParameterError
from ..scorers.weights import set_interface
from . import evaluate, images
from .arguments import add_scorer_options


class Parser(argparse.ArgumentParser):
    """Usage errors are one line too (``idguide: error: …``, exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"idguide: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="idguide", description="Identity metrics for generated images: score, rank, evaluate.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or IDGUIDE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    add_scorer_options(common)
    common.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    images.add_parsers(sub, common)
    evaluate.add_parser(sub)
    return parser


def one_line(error: BaseException, flags: dict[str, str] | None = None) -> str:
    """An exception as one line; the type is named unless it is one of the expected kinds. A
    library parameter is named by its command-line flag (``flags``: parameter → flag)."""
    if isinstance(error, ParameterError) and flags and error.parameter in flags:
        error = ValueError(f"{flags[error.parameter]}: {error.message}")
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, TypeError, OSError, WeightsError, ImageInputError)):
        return text
    return f"{type(error).__name__}: {text} (run with --debug for the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_interface("cli")
    debug = getattr(args, "debug", False) or os.environ.get("IDGUIDE_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt as interrupt:
        kept = f": {interrupt}" if str(interrupt) else ""
        print(f"idguide: interrupted{kept}", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"idguide: error: {one_line(error, getattr(args, 'flags', None))}", file=sys.stderr)
        return 2
