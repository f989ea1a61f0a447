import pytest

from idguide.scorers.ranking import rank, readable


def test_sort_threshold_top_k():
    scores = [0.2, 0.9, 0.5, 0.9, 0.1]
    assert rank(scores).kept == [1, 3, 2, 0, 4]  # stable for ties
    r = rank(scores, top_k=2, threshold=0.3)
    assert r.kept == [1, 3] and r.rejected == [2, 0, 4]
    assert rank(scores, threshold=0.5).kept == [1, 3, 2]


def test_nothing_passes():
    assert rank([0.2, 0.4], threshold=0.9).kept == [1]
    with pytest.raises(ValueError, match=r"no image reached the threshold 0.9 \(best score 0.4000\)"):
        rank([0.2, 0.4], threshold=0.9, on_empty="error")
    with pytest.raises(ValueError, match="top_k"):
        rank([0.1], top_k=0)


def test_readable_scale():
    assert readable(0.5) == 50.0 and readable(1.0) == 100.0
