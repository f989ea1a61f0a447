"""Checks of numeric settings at construction: a NaN, a fraction where a count belongs or a zero
size must fail at once with the setting's name, not deep inside a sampler (or not at all)."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path


def integer(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def number(name: str, value, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in [low, high] (an end is excluded when ``*_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = ("" if low is None else f"{'>' if low_open else '>='} {low:g}") + \
                 (" and " if low is not None and high is not None else "") + \
                 ("" if high is None else f"{'<' if high_open else '<='} {high:g}")
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return float(value)


def window(start, end) -> None:
    number("start", start, 0.0, 1.0)
    number("end", end, 0.0, 1.0)
    if start > end:
        raise ValueError(f"need start <= end, got start={start}, end={end}")


def decode_size(value) -> None:
    """``None`` (full size) or at least 16 pixels."""
    if value is not None:
        integer("decode_size", value, 16)


def renamed(kwargs: dict, old: str, new: str, where: str):
    """Pop a keyword renamed in 0.2 (kept for one release with a ``DeprecationWarning``); ``None`` if absent."""
    if old not in kwargs:
        return None
    import warnings

    warnings.warn(f"{where}: '{old}=' is renamed '{new}=' (the old name goes in the next release)",
                  DeprecationWarning, stacklevel=3)
    return kwargs.pop(old)


def inside(root, relative, what: str):
    """``root/relative`` (links resolved) when it stays inside ``root``; a name that leads out
    (``..``, an absolute path, a link) is refused naming ``what``."""
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([path, root]) != root:
        raise ValueError(f"'{what}' {str(relative)!r} is outside {root}")
    return Path(path)
