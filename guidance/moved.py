"""Module paths that moved in 0.2 (``guidance/`` core, ``diffusers/`` adapters, ``generate/``
drivers): the old ones still import, with a ``DeprecationWarning``, until the next release."""

from __future__ import annotations

import importlib
import warnings


def forward(old: str, new: str) -> dict:
    """The public names of ``idguide.guidance.<new>``, after warning that ``<old>`` moved there."""
    warnings.warn(f"idguide.guidance.{old} moved to idguide.guidance.{new}; the old path goes in the next release",
                  DeprecationWarning, stacklevel=3)
    module = importlib.import_module(f"{__package__}.{new}")
    return {k: v for k, v in vars(module).items() if not k.startswith("__")}
