"""The search loops shared by the library and the ComfyUI node, on functions with a known optimum."""

import math

import pytest
import torch

from idguide.guidance.search import path_plan, paths, zero_order


def quadratic(target: torch.Tensor):
    """Score = −distance to a target noise; the search sees only scores."""
    seen: list[torch.Tensor] = []

    def evaluate(noise: torch.Tensor, index: int) -> list[float]:
        assert index == len(seen)
        seen.extend(noise)
        return (-(noise - target).norm(dim=-1)).tolist()

    return evaluate, seen


def test_zero_order_beats_random_search_at_equal_budget():
    gains = []
    for trial in range(10):
        g = torch.Generator().manual_seed(trial)
        target = torch.randn(8, generator=g)
        evaluate, _ = quadratic(target)
        searched = max(zero_order(evaluate, lambda count, _: torch.randn(count, 8, generator=g), 48, 4, 0.5))
        evaluate, _ = quadratic(target)
        random = max(evaluate(torch.randn(48, 8, generator=g), 0))
        gains.append(searched - random)
    assert sum(g > 0 for g in gains) >= 8, gains


def test_zero_order_neighbours_stay_standard_normal_and_centre_on_the_best():
    target = torch.zeros(4096)
    evaluate, seen = quadratic(target)
    g = torch.Generator().manual_seed(0)
    scores = zero_order(evaluate, lambda count, _: torch.randn(count, 4096, generator=g), 8, 4, 0.6)
    best = seen[max(range(4), key=scores.__getitem__)]
    neighbours = torch.stack(seen[4:])
    assert neighbours.std().item() == pytest.approx(1.0, abs=0.02)  # √(1-λ²)² + λ² = 1
    for n in neighbours:
        assert torch.dot(n, best).item() / 4096 == pytest.approx(math.sqrt(1 - 0.36), abs=0.05)


def test_zero_order_stops_when_asked():
    evaluate, seen = quadratic(torch.zeros(2))
    zero_order(evaluate, lambda count, _: torch.zeros(count, 2), 16, 4, 0.5, stop=lambda best: best >= 0)
    assert len(seen) == 4  # the first round found the optimum


def test_paths_branches_the_best_so_far_within_the_budget():
    assert path_plan(8, parents=2, strength=0.5) == (4, 8)
    assert path_plan(8, starts=8) == (8, 0)
    assert path_plan(5, parents=1, strength=0.3) == (2, 10)
    values = iter([0.1, 0.9, 0.5, 0.2])
    calls = []

    def sample(count, index):
        return [next(values) for _ in range(count)]

    def branch(chosen, index):
        calls.append((chosen, index))
        return [1.0 + 0.1 * index + 0.01 * i for i in range(len(chosen))]

    scores = paths(sample, branch, 8, parents=2, strength=0.5)
    assert len(scores) == 4 + 8
    assert calls[0] == ([1, 2], 4)  # the two best starts
    assert calls[1] == ([5, 4], 6)  # then the best branches so far
    assert sum(len(c) for c, _ in calls) == 8


@pytest.mark.parametrize("kwargs,message", [
    (dict(budget=0), "budget must be an integer >= 1"), (dict(budget=2.5), "budget must be an integer"),
    (dict(budget=4, parents=0), "parents must be"),
    (dict(budget=4, strength=0.0), "strength must be a finite number > 0 and <= 1"),
    (dict(budget=4, strength=float("nan")), "strength must be"), (dict(budget=4, starts=5), "must not exceed"),
])
def test_bad_search_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        path_plan(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(budget=4, neighbours=0), "neighbours must be"), (dict(budget=4, mix=1.5), "mix must be"),
    (dict(budget=True), "budget must be an integer"),
])
def test_bad_zero_order_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zero_order(lambda n, i: [0.0] * len(n), lambda c, i: torch.zeros(c, 1), **kwargs)
