"""Ranking metrics of the lens-finding challenge (Metcalf+19), exact with ties.

All functions take scores where higher means "more likely positive" and labels in {0, 1}.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm, rankdata

from skysift.errors import DataError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    try:
        scores = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("scores must be numbers") from None
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise DataError(f"scores {scores.shape} and labels {labels.shape} must be 1-D and equal")
    if not np.isin(labels, (0, 1)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise DataError("scores must be finite")
    return scores, labels.astype(bool)


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U).

    Returns NaN when either class is empty.
    """
    scores, labels = _check(scores, labels)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks: ties count one half
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auroc_weighted(scores, labels, neg_weights) -> float:
    """:func:`auroc` with weighted negatives: sum_ij w_j ([s_i > s_j] + 0.5 [s_i = s_j]) over
    positives i and negatives j, divided by n_pos * sum_j w_j.

    neg_weights : (n_neg,) non-negative weights of the negatives, in their order in
    ``scores`` (e.g. to give the negatives the positives' distribution of a catalog quantity).
    Unit weights give :func:`auroc`; an integer weight counts a negative that many times.
    Returns NaN when either class is empty or the weights sum to zero.
    """
    scores, labels = _check(scores, labels)
    w = np.asarray(neg_weights, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if w.shape != neg.shape or (w < 0).any() or not np.isfinite(w).all():
        raise DataError(f"neg_weights must be {neg.size} finite non-negative numbers")
    if pos.size == 0 or w.sum() == 0:
        return float("nan")
    order = np.argsort(neg, kind="stable")
    neg, cum = neg[order], np.concatenate([[0.0], np.cumsum(w[order])])
    below = cum[np.searchsorted(neg, pos, side="left")]
    tied = cum[np.searchsorted(neg, pos, side="right")] - below
    return float((below + 0.5 * tied).sum() / (pos.size * cum[-1]))


def tpr_at_fp(scores, labels, n_fp: int) -> float:
    """True-positive rate at the loosest threshold that admits at most ``n_fp`` false positives.

    The threshold is the ``(n_fp + 1)``-th highest negative score; positives count when
    strictly above it, so a positive tied with that negative does not count (no threshold
    separates them). With at most ``n_fp`` negatives every positive counts. NaN without
    positives. TPR0 is ``n_fp=0``, TPR10 (fewer than ten false positives) is ``n_fp=9``.
    """
    if int(n_fp) != n_fp or n_fp < 0:
        raise DataError(f"n_fp must be a non-negative integer, got {n_fp}")
    scores, labels = _check(scores, labels)
    pos, neg = scores[labels], scores[~labels]
    if pos.size == 0:
        return float("nan")
    if neg.size <= n_fp:
        return 1.0
    limit = np.sort(neg)[::-1][n_fp]  # the (n_fp+1)-th highest negative
    return float((pos > limit).mean())


def tpr0(scores, labels) -> float:
    """TPR before the first false positive (Metcalf+19)."""
    return tpr_at_fp(scores, labels, 0)


def tpr10(scores, labels) -> float:
    """TPR before the tenth false positive, i.e. with at most 9 false positives (Metcalf+19)."""
    return tpr_at_fp(scores, labels, 9)


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """TPR at the loosest threshold whose false-positive rate is at most ``fpr``.

    That threshold admits ``floor(fpr * n_neg)`` false positives (:func:`tpr_at_fp`), so
    with fewer than ``1 / fpr`` negatives it is TPR0. NaN without positives or negatives.
    """
    if not 0.0 <= fpr <= 1.0:
        raise DataError(f"fpr must lie in [0, 1], got {fpr}")
    _, y = _check(scores, labels)
    n_neg = int((~y).sum())
    if n_neg == 0:
        return float("nan")
    # the epsilon keeps e.g. 0.001 * 3000 from flooring to 2 through rounding
    return tpr_at_fp(scores, labels, int(np.floor(fpr * n_neg + 1e-9)))


def tpr_fpr1e3(scores, labels) -> float:
    """TPR at a false-positive rate of 10^-3 (:func:`tpr_at_fpr`)."""
    return tpr_at_fpr(scores, labels, 1e-3)


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) to (1, 1).

    Tied scores move the curve diagonally.
    """
    scores, labels = _check(scores, labels)
    if scores.size == 0:
        return np.zeros(1), np.zeros(1), np.full(1, np.inf)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


METRICS = {"auroc": auroc, "tpr0": tpr0, "tpr10": tpr10}
#: METRICS plus the TPR at FPR 10^-3 (what evaluate reports).
ALL_METRICS = {**METRICS, "tpr_fpr1e-3": tpr_fpr1e3}


def bootstrap(scores, labels, n_boot: int, ci: float, seed: int,
              fns: dict | None = None) -> dict:
    """Point values and stratified percentile-bootstrap intervals of every metric in ``fns``.

    ``fns`` maps names to ``f(scores, labels) -> float`` (default :data:`METRICS`).
    Positives and negatives are resampled separately (class counts fixed), so every
    resample has both classes. Returns {name: {"value", "lo", "hi"}}.
    """
    fns = METRICS if fns is None else fns
    if int(n_boot) != n_boot or n_boot < 0:
        raise DataError(f"n_boot must be a non-negative integer, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise DataError(f"ci must lie strictly between 0 and 1, got {ci}")
    scores, labels = _check(scores, labels)
    pos_idx, neg_idx = np.flatnonzero(labels), np.flatnonzero(~labels)
    out = {name: {"value": fn(scores, labels), "lo": float("nan"), "hi": float("nan")}
           for name, fn in fns.items()}
    if n_boot == 0 or pos_idx.size == 0 or neg_idx.size == 0:
        return out
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(n_boot) for name in fns}
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(pos_idx, pos_idx.size), rng.choice(neg_idx, neg_idx.size)])
        for name, fn in fns.items():
            draws[name][b] = fn(scores[idx], labels[idx])
    alpha = (1.0 - ci) / 2.0
    for name in fns:
        lo, hi = np.quantile(draws[name], [alpha, 1.0 - alpha])
        out[name]["lo"], out[name]["hi"] = float(lo), float(hi)
    return out


def wilson_interval(k: int, n: int, ci: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` at confidence ``ci``.

    Returns (lo, hi) within [0, 1]; (NaN, NaN) when ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + ci / 2.0))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at k = 0 and k = n (rounding would leave e.g. 1e-17)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi
