"""Calibration of prevalence-corrected probabilities: reliability diagram and ECE.

The catalog turns a logit ``z`` into a probability at a stated prevalence by assuming ``z``
is the log-odds at the balanced training prior (:mod:`skysift.score.prior`). The test split has
its own positive fraction ``pi_test``, so the probability the catalog would give there,
``prior.probability(z, pi_test)``, must match the observed positive fraction if that
assumption holds. This module measures how far it does not.

Bins: ``equal_count`` sorts the objects by probability and cuts them into bins holding equal
numbers (by bootstrap weight), so rare high probabilities are not left in near-empty bins;
``equal_width`` uses bins of width 1 / n_bins in probability. The expected calibration error
is ``ECE = sum_b (n_b / n) |mean(p)_b - mean(y)_b|``; it is biased upwards by the sampling
noise of small bins (~ sqrt(p (1 - p) / n_b)).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from skysift.io import atomic_output
from skysift.metrics import wilson_interval
from skysift.score import prior

BINNINGS = ("equal_count", "equal_width")


def _bins(p_sorted: np.ndarray, w_sorted: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    """Bin (n,) of objects sorted by probability, given their (bootstrap) weights."""
    if binning == "equal_width":
        return np.minimum((p_sorted * n_bins).astype(np.int64), n_bins - 1)
    if binning != "equal_count":
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    before = np.cumsum(w_sorted) - w_sorted  # weight of the objects before each one
    return np.minimum((before * n_bins / w_sorted.sum()).astype(np.int64), n_bins - 1)


def _sums(p_sorted, y_sorted, w_sorted, n_bins, binning):
    b = _bins(p_sorted, w_sorted, n_bins, binning)
    n = np.bincount(b, weights=w_sorted, minlength=n_bins)
    sp = np.bincount(b, weights=w_sorted * p_sorted, minlength=n_bins)
    sy = np.bincount(b, weights=w_sorted * y_sorted, minlength=n_bins)
    return n, sp, sy


def reliability(prob: np.ndarray, labels: np.ndarray, n_bins: int, binning: str, ci: float
                ) -> dict:
    """Reliability diagram of probabilities (n,) in [0, 1] against labels (n,) 0/1.

    Returns {"n": (b,), "p_mean": (b,), "frac_pos": (b,), "frac_pos_ci": (b, 2) Wilson,
    "ece": float}, empty bins dropped.
    """
    order = np.argsort(prob, kind="stable")
    p = np.asarray(prob, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    n, sp, sy = _sums(p, y, np.ones_like(p), n_bins, binning)
    keep = n > 0
    n, sp, sy = n[keep], sp[keep], sy[keep]
    k = np.rint(sy).astype(np.int64)
    ci_rows = [wilson_interval(int(kk), int(nn), ci) for kk, nn in zip(k, n, strict=True)]
    return {"n": n.astype(np.int64), "p_mean": sp / n, "frac_pos": sy / n,
            "frac_pos_ci": np.array(ci_rows).reshape(-1, 2),
            "ece": float(np.abs(sp - sy).sum() / max(p.size, 1))}


def ece(prob: np.ndarray, labels: np.ndarray, n_bins: int, binning: str) -> float:
    """Expected calibration error of probabilities (n,) against labels (n,) 0/1 (NaN if n=0)."""
    if np.asarray(prob).size == 0:
        return float("nan")
    return reliability(prob, labels, n_bins, binning, 0.5)["ece"]


def ece_bootstrap(prob: np.ndarray, labels: np.ndarray, n_bins: int, binning: str,
                  n_boot: int, ci: float, seed: int) -> tuple[float, float]:
    """Stratified percentile-bootstrap interval of the ECE (class counts fixed, so the test
    prevalence and hence the probabilities stay those of the full split); (NaN, NaN) when
    ``n_boot`` is 0 or a class is empty. Resamples are weights on the once-sorted objects:
    O(n) each."""
    y = np.asarray(labels).astype(bool)
    if n_boot == 0 or y.all() or not y.any():
        return float("nan"), float("nan")
    order = np.argsort(prob, kind="stable")
    p, ys = np.asarray(prob, dtype=np.float64)[order], y[order]
    pos, neg = np.flatnonzero(ys), np.flatnonzero(~ys)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for i in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        w = np.bincount(idx, minlength=p.size).astype(np.float64)
        n, sp, sy = _sums(p, ys.astype(np.float64), w, n_bins, binning)
        draws[i] = np.abs(sp - sy).sum() / p.size
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def ece_null(prob: np.ndarray, n_bins: int, binning: str, n_draws: int, ci: float,
             seed: int) -> tuple[float, list[float]]:
    """ECE a perfectly calibrated model would show with these probabilities and bins.

    Labels are drawn as Bernoulli(prob) ``n_draws`` times: returns (mean ECE, [lo, hi]
    percentile interval at ``ci``), the small-sample floor against which to read the ECE;
    (NaN, [NaN, NaN]) when ``n_draws`` is 0 or there are no objects.
    """
    p = np.sort(np.asarray(prob, dtype=np.float64))
    if n_draws == 0 or p.size == 0:
        return float("nan"), [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    w = np.ones_like(p)
    draws = np.empty(n_draws)
    for i in range(n_draws):
        y = (rng.random(p.size) < p).astype(np.float64)
        n, sp, sy = _sums(p, y, w, n_bins, binning)
        draws[i] = np.abs(sp - sy).sum() / p.size
    alpha = (1.0 - ci) / 2.0
    return float(draws.mean()), [float(q) for q in np.quantile(draws, [alpha, 1.0 - alpha])]


def calibrate(logits: np.ndarray, labels: np.ndarray, n_bins: int, binning: str,
              n_boot: int, ci: float, seed: int) -> dict:
    """Calibration of one model at the test split's own prevalence.

    logits : (n,) of labelled test objects; labels : (n,) 0/1. Returns the JSON-ready
    {"prevalence_test", "binning", "n_bins", "ece", "ece_ci", "ece_null", "ece_null_ci",
    "bins": [{"n", "p_mean", "frac_pos", "frac_pos_ci"}]}; NaN values without both classes.
    ``ece_ci`` is the stratified percentile bootstrap (``n_boot`` resamples); the ECE and its
    resamples share the small-bin upward bias, so with few objects per bin the interval may
    lie above the point value: read them against ``ece_null`` (:func:`ece_null`, ``n_boot``
    draws), the ECE expected of a perfectly calibrated model with the same probabilities.
    """
    y = np.asarray(labels).astype(np.int8)
    out = {"binning": binning, "n_bins": int(n_bins), "prevalence_test": float("nan"),
           "ece": float("nan"), "ece_ci": [float("nan"), float("nan")],
           "ece_null": float("nan"), "ece_null_ci": [float("nan"), float("nan")], "bins": []}
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return out
    pi_test = n_pos / y.size
    prob = prior.probability(logits, pi_test)
    rel = reliability(prob, y, n_bins, binning, ci)
    null_mean, null_ci = ece_null(prob, n_bins, binning, n_boot, ci, seed + 1)
    out.update(prevalence_test=pi_test, ece=rel["ece"],
               ece_ci=list(ece_bootstrap(prob, y, n_bins, binning, n_boot, ci, seed)),
               ece_null=null_mean, ece_null_ci=null_ci,
               bins=[{"n": int(n), "p_mean": float(pm), "frac_pos": float(fp),
                      "frac_pos_ci": [float(lo), float(hi)]}
                     for n, pm, fp, (lo, hi) in zip(rel["n"], rel["p_mean"], rel["frac_pos"],
                                                    rel["frac_pos_ci"], strict=True)])
    return out


def plot_reliability(results: Mapping[str, Mapping[str, Mapping]], path: str | Path) -> None:
    """Write a PNG reliability diagram atomically: one panel per task, every model in it.

    results : {task: {model: :func:`calibrate` output}}; a model without bins is listed in
    the legend as undefined.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(results), 1)
    fig = Figure(figsize=(4.6 * n, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, (task, by_model) in zip(axes, results.items(), strict=False):
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey", label="perfectly calibrated")
        pi = float("nan")
        for model, cal in by_model.items():
            if not cal["bins"]:
                ax.plot([], [], label=f"{model}: undefined (test split lacks a class)")
                continue
            pi = cal["prevalence_test"]
            pm = np.array([b["p_mean"] for b in cal["bins"]])
            fp = np.array([b["frac_pos"] for b in cal["bins"]])
            err = np.abs(np.array([b["frac_pos_ci"] for b in cal["bins"]]).T - fp)
            lo, hi = cal["ece_ci"]
            ci = "" if np.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]"
            null = "" if np.isnan(cal["ece_null"]) else f" (calibrated: {cal['ece_null']:.3f})"
            ax.errorbar(pm, fp, yerr=err, marker="o", ms=4, capsize=2, lw=1.2,
                        label=f"{model}: ECE {cal['ece']:.3f}{ci}{null}")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel(f"predicted probability at the test prevalence ({pi:.3g})")
        ax.set_ylabel("observed positive fraction")
        ax.set_title(f"{task}: reliability, test split")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
