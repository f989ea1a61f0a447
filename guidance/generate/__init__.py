"""Generation drivers: run a diffusers pipeline (any that takes ``generator``, ``latents`` or
``image``/``strength`` and returns ``output_type="pt"`` images) and return ``Ranked`` samples.
The loops they run live in the pure core (``guidance.ranked``, ``guidance.search``); the
ComfyUI nodes run the same loops over ComfyUI's samplers."""

from __future__ import annotations

import torch


def reserved_arguments(pipe_kwargs: dict, reserved: tuple[str, ...], what: str) -> None:
    """Refuse pipeline arguments a driver sets itself."""
    for name in reserved:
        if name in pipe_kwargs:
            hint = "; pass seed= instead" if name == "generator" else ""
            raise ValueError(f"{what} sets '{name}' itself{hint}")


def images_of(output) -> torch.Tensor:
    """A pipeline's ``output_type="pt"`` result as float images in [0, 1]."""
    return output.images.float().clamp(0, 1)
