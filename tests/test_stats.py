"""The protocol statistics against scikit-learn / scipy and hand-computed cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

from idguide.evaluation import stats


@pytest.fixture
def tied_pairs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(labels * 0.3 + rng.normal(0, 0.5, 300), 1)  # rounded: many ties
    return labels, scores


def test_ap_and_auc_equal_sklearn_with_ties(tied_pairs):
    labels, scores = tied_pairs
    assert len(np.unique(scores)) < 60  # ties really are there
    assert stats.average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert stats.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_hand_computed_ap_auc():
    # ranked: 0.9 (1), 0.8 (0), 0.7 (1), 0.7 (0): thresholds 0.9 → P=1 R=.5 ; 0.8 → P=.5 R=.5 ; 0.7 → P=.5 R=1
    assert stats.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.7]) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # positives {0.9, 0.7} vs negatives {0.8, 0.7}: wins 0.9>0.8, 0.9>0.7, 0.7<0.8, 0.7=0.7 (half) → 2.5/4
    assert stats.roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.7]) == pytest.approx(0.625)
    assert stats.roc_auc([1, 1, 0], [0.5, 0.5, 0.5]) == 0.5


@pytest.mark.parametrize("fn", [stats.average_precision, stats.roc_auc])
def test_degenerate_binary_inputs_fail_clearly(fn):
    with pytest.raises(ValueError, match="needs both same"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="3 labels for 2 scores"):
        fn([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        fn([1, 0], [0.1, np.nan])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        fn([2, 0], [0.1, 0.2])


def test_correlations_equal_scipy_and_fail_on_constants():
    from scipy.stats import kendalltau, pearsonr, spearmanr

    rng = np.random.default_rng(1)
    human = rng.integers(0, 5, 200)
    metric = human * 5 + rng.normal(0, 8, 200)
    assert stats.pearson(metric, human) == pytest.approx(pearsonr(metric, human)[0], abs=1e-12)
    assert stats.spearman(metric, human) == pytest.approx(spearmanr(metric, human)[0], abs=1e-12)
    assert stats.kendall(metric, human) == pytest.approx(kendalltau(metric, human)[0], abs=1e-12)
    # tau-b by hand on a tiny tied case: pairs (1,1),(2,1),(3,2): concordant 2, discordant 0, one tie in y
    assert stats.kendall([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / np.sqrt(3 * 2))
    with pytest.raises(ValueError, match="all values are equal"):
        stats.pearson([1, 2, 3], [2, 2, 2])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        stats.spearman([1], [1])


def test_fisher_z_mean():
    assert stats.fisher_z_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert stats.fisher_z_mean([0.2, 0.6]) == pytest.approx(np.tanh((np.arctanh(0.2) + np.arctanh(0.6)) / 2))
    assert stats.fisher_z_mean([1.0]) == pytest.approx(0.9999)  # clipped, not infinite
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        stats.fisher_z_mean([1.2])


def retrieval_case():
    rng = np.random.default_rng(2)
    gallery_ids = np.repeat(np.arange(6), 4)
    query_ids = np.arange(6).repeat(2)
    similarity = np.round(rng.normal(0, 1, (12, 24)) + 1.5 * (query_ids[:, None] == gallery_ids[None]), 1)
    return similarity, query_ids, gallery_ids


def test_retrieval_metrics_equal_sklearn_per_query():
    similarity, q, g = retrieval_case()
    relevant = (q[:, None] == g[None]).astype(int)
    expected_map = np.mean([average_precision_score(r, s) for r, s in zip(relevant, similarity)])
    assert stats.retrieval_map(similarity, q, g) == pytest.approx(expected_map, abs=1e-12)
    assert stats.retrieval_auc(similarity, q, g) == pytest.approx(roc_auc_score(relevant.ravel(), similarity.ravel()))
    # Without ties nDCG equals sklearn's (which averages over tied orders instead of ranking them last).
    untied = similarity + np.random.default_rng(3).normal(0, 1e-6, similarity.shape)
    assert stats.ndcg(untied, q, g) == pytest.approx(ndcg_score(relevant, untied), abs=1e-12)
    assert stats.ndcg(untied, q, g, k=5) == pytest.approx(ndcg_score(relevant, untied, k=5), abs=1e-12)


def test_ndcg_ranks_ties_pessimistically():
    # one relevant of two, tied: ranked second → 1/log2(3)
    assert stats.ndcg([[0.5, 0.5]], ["a"], ["a", "b"]) == pytest.approx(1 / np.log2(3))
    assert stats.ndcg([[0.6, 0.5]], ["a"], ["a", "b"]) == 1.0


def test_retrieval_input_errors():
    similarity, q, g = retrieval_case()
    with pytest.raises(ValueError, match="no gallery item of their instance"):
        stats.retrieval_map(similarity, np.r_[q[:-1], 99], g)
    with pytest.raises(ValueError, match=r"matrix \(12, 24\) for 12 queries and 23"):
        stats.retrieval_map(similarity, q, g[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        stats.retrieval_map(np.zeros((0, 3)), [], [1, 2, 3])


def test_triplets_and_ssr_pa_by_hand():
    assert stats.triplet_accuracy([0.9, 0.5, 0.4], [0.1, 0.5, 0.6]) == pytest.approx(0.5)  # win, tie (half), loss
    positive = np.array([[0.9, 0.8], [0.7, 0.3], [0.5, 0.5]])
    negative = np.array([[0.1, 0.2], [0.6, 0.4], [0.5, 0.4]])
    # wins: [T,T], [T,F], [F(tie),T] → SSR 1/3, PA 4/6
    assert stats.ssr_pa(positive, negative) == pytest.approx((1 / 3, 4 / 6))
    with pytest.raises(ValueError, match="must be equal"):
        stats.ssr_pa(positive, negative[:2])
    with pytest.raises(ValueError, match="2 positives for 3 negatives"):
        stats.triplet_accuracy([1, 2], [1, 2, 3])
