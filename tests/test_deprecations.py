"""Names that moved or were renamed in 0.2 keep working for one release, each with a
DeprecationWarning naming the new one; the one best-of-N loop (library and node) on plain functions."""

import warnings

import pytest
import torch

import idguide
from idguide.guidance.ranked import Ranked, best_of_batches


def test_best_of_n_is_ranked_with_a_warning():
    with pytest.warns(DeprecationWarning, match="idguide.BestOfN is renamed idguide.Ranked"):
        assert idguide.BestOfN is idguide.Ranked


@pytest.mark.parametrize("old,names,new", [
    ("diffusers_callback", ("IdentityGuidanceCallback", "StepGuard"), "diffusers.callback"),
    ("particles", ("ParticleSteering", "steer_particles", "resample_state"), "diffusers.particles"),
    ("pipeline_decoder", ("PipelineDecoder", "load_tiny", "tiny_family"), "diffusers.decoder"),
    ("best_of_n", ("best_of_n", "BestOfN", "Sample"), "generate.best_of_n"),
])
def test_old_module_paths_import_with_a_warning(old, names, new):
    import importlib
    import sys

    sys.modules.pop(f"idguide.guidance.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"idguide.guidance.{old} moved to idguide.guidance.{new}"):
        module = importlib.import_module(f"idguide.guidance.{old}")
    for name in names:
        assert getattr(module, name) is not None, name
    with warnings.catch_warnings(record=True) as caught:  # the search drivers' old home
        warnings.simplefilter("always")
        from idguide.guidance.search import noise_search
    assert noise_search is idguide.noise_search and "moved to idguide.guidance.generate.search" in str(caught[0].message)


def test_noise_search_step_is_now_mix():
    calls = []

    class Pipe:
        device = torch.device("cpu")

        def __call__(self, latents, num_images_per_prompt, output_type, **kwargs):
            calls.append(latents.clone())
            return type("Out", (), {"images": latents.mean(1, keepdim=True).expand(-1, 3, -1, -1).sigmoid()})()

    class Scorer(idguide.Scorer):  # compares pixels: what noise search does with a scorer is all that matters here
        def __init__(self):
            super().__init__(preprocess=None)
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def as_embedding(self, reference, parameter="images"):
            return reference

        def score(self, reference, images):
            return -(images - reference).abs().mean((1, 2, 3))

    reference = torch.full((1, 3, 4, 4), 0.7)
    new = idguide.noise_search(Pipe(), Scorer(), reference, (2, 4, 4), budget=6, neighbours=3, mix=0.3, seed=1)
    first = [c.clone() for c in calls]
    calls.clear()
    with pytest.warns(DeprecationWarning, match="'step=' is renamed 'mix='"):
        old = idguide.noise_search(Pipe(), Scorer(), reference, (2, 4, 4), budget=6, neighbours=3, step=0.3, seed=1)
    assert old.all_scores == new.all_scores and all(torch.equal(a, b) for a, b in zip(first, calls))
    assert isinstance(new, Ranked)


def test_best_of_batches_ranks_stops_and_reports():
    seen, progress = [], []

    def generate(seeds):
        seen.append(seeds)
        return [torch.full((3, 2, 2), s / 10) for s in seeds], [float((s * 7) % 5) for s in seeds]

    full = best_of_batches(generate, n=7, batch_size=3, seed=2, keep=3, advance=progress.append)
    assert seen == [[2, 3, 4], [5, 6, 7], [8]] and progress == [3, 3, 1]
    assert full.seeds == [2, 7, 4] and full.scores == [4.0, 4.0, 3.0] and not full.stopped_early  # a tie: first seen first
    assert full.all_scores == [4.0, 1.0, 3.0, 0.0, 2.0, 4.0, 1.0] and full.generated == 7
    assert torch.equal(full.images[0], torch.full((3, 2, 2), 0.2))
    seen.clear()
    stopped = best_of_batches(generate, n=7, batch_size=3, seed=2, keep=1, threshold=4.0)
    assert seen == [[2, 3, 4]] and stopped.stopped_early and stopped.generated == 3 and stopped.seeds == [2]
    with pytest.raises(ValueError, match="batch_size must be"):
        best_of_batches(generate, n=7, batch_size=0)
