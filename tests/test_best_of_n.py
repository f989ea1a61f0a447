"""best_of_n on a real tiny SD1.5 pipeline."""

import pytest
import torch
from pipelines import CALL, PROMPT, sd15

import idguide
from idguide import IdentityGuidanceCallback, best_of_n

from conftest import EXAMPLES

CALL_ARGS = {**CALL["sd15"], "num_inference_steps": 4}


@pytest.fixture(scope="module")
def setup(weights_root, tmp_path_factory):
    scorer = idguide.load_scorer("nearid", weights=weights_root / "nearid-siglip2")
    reference = idguide.load_image(EXAMPLES / "reference.jpg")[None]
    return sd15(tmp_path_factory.mktemp("sd15")), scorer, reference


def test_ranked_by_independent_scores_and_reproducible_from_seed(setup):
    pipe, scorer, reference = setup
    result = best_of_n(pipe, scorer, reference, n=5, batch_size=2, keep=3, seed=10, prompt=PROMPT, **CALL_ARGS)
    assert result.generated == 5 and not result.stopped_early and len(result.samples) == 3
    rescored = scorer.score(reference, result.images).tolist()
    assert all(abs(a - b) < 1e-5 for a, b in zip(rescored, result.scores))
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.scores[0] == max(result.all_scores) and len(result.all_scores) == 5
    assert len(set(result.seeds)) == 3 and all(10 <= s < 15 for s in result.seeds)
    best = result.samples[0]
    again = pipe(PROMPT, generator=torch.Generator().manual_seed(best.seed), output_type="pt", **CALL_ARGS).images[0]
    assert torch.allclose(again, best.image, atol=1e-4)


def test_early_stop_at_threshold(setup):
    pipe, scorer, reference = setup
    full = best_of_n(pipe, scorer, reference, n=6, batch_size=2, seed=0, prompt=PROMPT, progress=False, **CALL_ARGS)
    threshold = max(full.all_scores[:2])  # reached in the first batch
    stopped = best_of_n(pipe, scorer, reference, n=6, batch_size=2, seed=0, threshold=threshold, prompt=PROMPT,
                        progress=False, **CALL_ARGS)
    assert stopped.stopped_early and stopped.generated == 2
    assert stopped.all_scores == pytest.approx(full.all_scores[:2], abs=1e-5)
    never = best_of_n(pipe, scorer, reference, n=4, batch_size=2, seed=0, threshold=2.0, prompt=PROMPT,
                      progress=False, **CALL_ARGS)
    assert not never.stopped_early and never.generated == 4


def test_with_guidance_callback(setup):
    pipe, scorer, reference = setup
    plain = best_of_n(pipe, scorer, reference, n=2, batch_size=2, seed=3, prompt=PROMPT, progress=False, **CALL_ARGS)
    cb = IdentityGuidanceCallback(scorer, reference, scale=2.0, end=1.0, decode_size=64)
    guided = best_of_n(pipe, scorer, reference, n=2, batch_size=2, seed=3, prompt=PROMPT, progress=False,
                       callback_on_step_end=cb, callback_on_step_end_tensor_inputs=cb.tensor_inputs, **CALL_ARGS)
    assert guided.scores[0] > plain.scores[0]


def test_bad_arguments(setup):
    pipe, scorer, reference = setup
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        best_of_n(pipe, scorer, reference, n=0)
    with pytest.raises(ValueError, match="pass seed= instead"):
        best_of_n(pipe, scorer, reference, generator=torch.Generator())
