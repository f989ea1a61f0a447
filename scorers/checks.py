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


class NoEffectWarning(UserWarning):
    """A setting was given that does nothing in the mode chosen (so the user knows it was ignored)."""


def no_effect(message: str, stacklevel: int = 3) -> None:
    import warnings

    warnings.warn(message, NoEffectWarning, stacklevel=stacklevel)


def inside(root, relative, what: str):
    """``root/relative`` (links resolved) when it stays inside ``root``; a name that leads out
    (``..``, an absolute path, a link) is refused naming ``what``."""
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([path, root]) != root:
        raise ValueError(f"'{what}' {str(relative)!r} is outside {root}")
    return Path(path)


RESERVED = set('/\\<>:"|?*')  # separators, and what Windows refuses in a file name


def file_name(parameter: str, name) -> str:
    """A user-given name that becomes a file or folder name (a method's rating file, a metric's
    plot): one plain name, so nothing is written outside the folder meant for it (``..``, a
    separator) or refused by another system (``:``, ``*``, control characters)."""
    from .errors import ParameterError

    if not isinstance(name, str) or not name.strip():
        raise ParameterError(parameter, f"expected a non-empty name, got {name!r}")
    bad = sorted({c for c in name if c in RESERVED or ord(c) < 32})
    if bad or name in (".", "..") or name != name.strip():
        why = (f"it holds {', '.join(map(repr, bad))}" if bad else
               "it names a folder, not a file" if name in (".", "..") else "it starts or ends with a space")
        raise ParameterError(parameter, f"{name!r} cannot be a file name ({why}); use letters, digits, '-', '_', '.'")
    return name


def given(value) -> str:
    """What a wrong argument was, for an error message: its type (and a tensor's shape)."""
    if value is None:
        return "None"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return type(value).__name__


def scorer(value, parameter: str = "scorer"):
    """An idguide ``Scorer``, or a ``TypeError`` naming the parameter (not an AttributeError later)."""
    from .base import Scorer

    if not isinstance(value, Scorer):
        raise TypeError(f"{parameter} must be an idguide Scorer (from idguide.load_scorer), got {given(value)}")
    return value


def pipeline(value, parameter: str = "pipe", needs: tuple[str, ...] = ()):
    """A diffusers pipeline (anything callable the way one is, with the attributes in ``needs``)."""
    if not callable(value) or isinstance(value, type):
        raise TypeError(f"{parameter} must be a diffusers pipeline (an instance, called to generate), "
                        f"got {given(value) if not isinstance(value, type) else 'the class ' + value.__name__}")
    missing = [name for name in needs if not hasattr(value, name)]
    if missing:
        raise TypeError(f"{parameter}: {type(value).__name__} has no {', '.join('.' + m for m in missing)}, "
                        "which a diffusers pipeline has")
    return value


def shape(parameter: str, value) -> tuple[int, ...]:
    """A tensor shape (a tuple, list or ``torch.Size``) of integers >= 1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"{parameter} must be a shape such as (4, 64, 64), got {value!r}")
    for i, size in enumerate(value):
        integer(f"{parameter}[{i}]", size)
    return tuple(int(s) for s in value)
