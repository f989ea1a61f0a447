"""Optional dependencies: each front end's extra, and one clear message when it is missing.

The ComfyUI node pack installs only ``requirements.txt``; diffusers (the pipeline callback, particle
steering, the proving ground) and accelerate (multi-process scoring) are extras, so a missing one
must say which ``pip install`` brings it rather than fail with a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"diffusers": "diffusers", "accelerate": "accelerate"}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        fix = f"pip install 'idguide[{extra}]'" if extra else f"pip install {top}"
        raise ImportError(f"{purpose} needs {top}, which is not installed ({error}); install it with: {fix}") from error
