"""The statistics of the papers' protocols, on plain score arrays (no model needed).

Every function checks its input and raises ``ValueError`` naming the problem (empty input,
mismatched lengths, a single class, non-finite scores) rather than returning NaN.
Conventions, where papers leave them open: ties between a positive and a negative count half
(ROC-AUC, triplet accuracy) or as a loss (SSR / PA: a margin must be strictly positive);
average precision is the step-wise sum over distinct thresholds (scikit-learn's definition).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

ArrayLike = Sequence[float] | np.ndarray


def _vector(x: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}: empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def _pair(x: ArrayLike, y: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _vector(x, f"{what} (first)"), _vector(y, f"{what} (second)")
    if x.shape != y.shape:
        raise ValueError(f"{what}: {x.size} values against {y.size}")
    if x.size < 2:
        raise ValueError(f"{what}: needs at least 2 pairs, got {x.size}")
    return x, y


def _varying(x: np.ndarray, what: str) -> None:
    if np.all(x == x[0]):
        raise ValueError(f"{what}: all values are equal ({x[0]:g}); the correlation is undefined")


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    x, y = _pair(x, y, "pearson")
    _varying(x, "pearson (first)")
    _varying(y, "pearson (second)")
    return float(stats.pearsonr(x, y).statistic)


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    x, y = _pair(x, y, "spearman")
    _varying(x, "spearman (first)")
    _varying(y, "spearman (second)")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b (ties in either variable corrected for; human ratings are 0-4 integers)."""
    x, y = _pair(x, y, "kendall")
    _varying(x, "kendall (first)")
    _varying(y, "kendall (second)")
    return float(stats.kendalltau(x, y, variant="b").statistic)


def fisher_z_mean(correlations: ArrayLike) -> float:
    """``tanh(mean(arctanh(clip(r, -0.9999, 0.9999))))``: averaging correlations (DreamBench++)."""
    r = _vector(correlations, "fisher_z_mean")
    if (np.abs(r) > 1).any():
        raise ValueError(f"fisher_z_mean: correlations must lie in [-1, 1], got {r.min():g}..{r.max():g}")
    return float(np.tanh(np.mean(np.arctanh(np.clip(r, -0.9999, 0.9999)))))


def _binary(labels: ArrayLike, scores: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores = _vector(scores, f"{what}: scores")
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise ValueError(f"{what}: {labels.size} labels for {scores.size} scores")
    if not np.isin(labels, (0, 1, True, False)).all():
        raise ValueError(f"{what}: labels must be 0/1 (same / different), got {np.unique(labels)[:5]}")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError(f"{what}: needs both same (1) and different (0) pairs; all {len(labels)} are "
                         f"{'same' if labels.all() else 'different'}")
    return labels, scores


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a same pair > score of a different pair), ties half."""
    labels, scores = _binary(labels, scores, "roc_auc")
    ranks = stats.rankdata(scores)  # average ranks: ties count half
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """AP = Σ (R_k − R_{k−1}) P_k over distinct score thresholds, highest first."""
    labels, scores = _binary(labels, scores, "average_precision")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_group = np.r_[np.diff(scores) != 0, True]  # the end of each run of tied scores
    hits = np.cumsum(labels)[last_of_group]
    seen = np.arange(1, len(labels) + 1)[last_of_group]
    precision, recall = hits / seen, hits / labels.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _retrieval(similarity: np.ndarray, query_ids: ArrayLike, gallery_ids: ArrayLike):
    similarity = np.asarray(similarity, dtype=np.float64)
    query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
    if similarity.ndim != 2 or similarity.size == 0:
        raise ValueError(f"retrieval: expected a non-empty [queries, gallery] matrix, got shape {similarity.shape}")
    if similarity.shape != (len(query_ids), len(gallery_ids)):
        raise ValueError(f"retrieval: matrix {similarity.shape} for {len(query_ids)} queries and "
                         f"{len(gallery_ids)} gallery items")
    if not np.isfinite(similarity).all():
        raise ValueError("retrieval: the similarity matrix has non-finite values")
    relevant = query_ids[:, None] == gallery_ids[None, :]
    without = np.flatnonzero(~relevant.any(axis=1))
    if len(without):
        raise ValueError(f"retrieval: {len(without)} queries have no gallery item of their instance "
                         f"(first: query {without[0]}, id {query_ids[without[0]]!r}); drop them or add their matches")
    return similarity, relevant


def retrieval_map(similarity, query_ids: ArrayLike, gallery_ids: ArrayLike) -> float:
    """Mean over queries of the average precision of the gallery ranked by similarity."""
    similarity, relevant = _retrieval(similarity, query_ids, gallery_ids)
    if relevant.all():
        raise ValueError("retrieval_map: every gallery item matches every query (a single instance)")
    return float(np.mean([average_precision(r, s) if not r.all() else 1.0 for r, s in zip(relevant, similarity)]))


def retrieval_auc(similarity, query_ids: ArrayLike, gallery_ids: ArrayLike) -> float:
    """ROC-AUC over all query–gallery pairs pooled (same instance = positive)."""
    similarity, relevant = _retrieval(similarity, query_ids, gallery_ids)
    return roc_auc(relevant.ravel(), similarity.ravel())


def ndcg(similarity, query_ids: ArrayLike, gallery_ids: ArrayLike, k: int | None = None) -> float:
    """Mean over queries of nDCG@k (binary relevance, log2 discount; all of the gallery by default).
    Tied scores are ranked pessimistically (relevant items last), so ties never inflate it."""
    similarity, relevant = _retrieval(similarity, query_ids, gallery_ids)
    k = similarity.shape[1] if k is None else k
    if k < 1:
        raise ValueError(f"ndcg: k must be >= 1, got {k}")
    discount = 1.0 / np.log2(np.arange(2, min(k, similarity.shape[1]) + 2))
    values = []
    for r, s in zip(relevant, similarity):
        order = np.lexsort((r, -s))  # by score descending; among ties, irrelevant first
        gains = r[order][: len(discount)]
        ideal = np.sort(r)[::-1][: len(discount)]
        values.append(float((gains * discount).sum() / (ideal * discount).sum()))
    return float(np.mean(values))


def triplet_accuracy(anchor_positive: ArrayLike, anchor_negative: ArrayLike) -> float:
    """Fraction of triplets where the positive is more similar to the anchor (ties half) — CUTE."""
    pos, neg = _vector(anchor_positive, "triplet_accuracy: positives"), _vector(anchor_negative, "triplet_accuracy: negatives")
    if pos.shape != neg.shape:
        raise ValueError(f"triplet_accuracy: {pos.size} positives for {neg.size} negatives")
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def ssr_pa(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """NearID's SSR and PA from ``[samples, trials]`` similarities of each true positive and its
    matched distractor to the anchor (one column per margin trial: view pair × direction).

    Margin = positive − negative, a win when strictly > 0. SSR: the fraction of samples that win
    **every** trial; PA: the fraction of all trials won.
    """
    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if positive.ndim == 1:
        positive, negative = positive[:, None], negative[:, None]
    if positive.shape != negative.shape or positive.ndim != 2 or positive.size == 0:
        raise ValueError(f"ssr_pa: positive {positive.shape} and negative {negative.shape} must be equal, "
                         "non-empty [samples, trials] arrays")
    if not (np.isfinite(positive).all() and np.isfinite(negative).all()):
        raise ValueError("ssr_pa: non-finite similarities")
    wins = positive - negative > 0
    return float(wins.all(axis=1).mean()), float(wins.mean())
