"""Automatic best-of-N over a diffusers pipeline: generate in batches, score each sample once, keep the best."""

from __future__ import annotations

import torch

from ...scorers import Scorer, checks
from ...scorers.base import EmbeddingOrImages
from ..ranked import Ranked, best_of_batches, check_best_of, scores_of
from . import images_of, reserved_arguments


def best_of_n(
    pipe,
    scorer: Scorer,
    reference: EmbeddingOrImages,
    n: int = 8,
    batch_size: int = 4,
    keep: int = 1,
    threshold: float | None = None,
    seed: int = 0,
    progress: bool = True,
    **pipe_kwargs,
) -> Ranked:
    """Generate up to ``n`` images with ``pipe`` (seeds ``seed .. seed+n-1``, one generator per
    image), score each against the once-embedded ``reference`` and return the ``keep`` best.

    Stops after the batch in which a score reaches ``threshold``. ``pipe_kwargs`` go to the
    pipeline (prompt, steps, ``callback_on_step_end`` for guidance, ...).
    """
    check_best_of(n, batch_size, keep, seed, threshold)
    checks.pipeline(pipe)
    checks.scorer(scorer)
    reserved_arguments(pipe_kwargs, ("generator", "num_images_per_prompt", "output_type"), "best_of_n")
    from tqdm.auto import tqdm

    ref = scorer.as_embedding(reference, "reference")

    def generate(seeds: list[int]):
        # CPU generators on every device (diffusers draws on the CPU and moves the noise): the
        # documented torch.Generator().manual_seed(seed) regenerates each image, on a GPU too.
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        images = images_of(pipe(generator=generators, num_images_per_prompt=len(seeds), output_type="pt",
                                **pipe_kwargs))
        return images.cpu(), scores_of(scorer, ref, images)

    with tqdm(total=n, desc="best-of-n", unit="img", disable=not progress) as bar:
        return best_of_batches(generate, n, batch_size, seed, keep, threshold, bar.update)
