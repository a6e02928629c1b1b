"""Purity and completeness as functions of score, from the graded random sample of the page.

The review page holds the top K (a census), objects drawn at random in bins of score (each
bin a stratum, weight ``N_b / n_b``) and known lenses as checks (:mod:`.sample`). Given
each page object's combined grade, with A or B counted as a lens:

- **Weights after grading.** Objects left ungraded are taken as missing at random within
  their stratum: each graded object of stratum ``s`` weighs ``N_s / g_s``, ``N_s`` the
  stratum's population (the sum of its recorded weights; K for the top) and ``g_s`` its
  graded objects. Checks carry no weight: they are no sample of the survey.
- **Purity per score bin**: the weighted fraction of lenses among the graded random objects
  of the bin (the bin's objects outside the top K; within a bin the weights are equal, so it
  is the plain fraction), a Wilson interval on it, and the estimated lenses in the bin
  ``N_b x purity``. The top K's own purity is the purity by grade of :mod:`.grades`.
- **Completeness at a score threshold t**: the Horvitz-Thompson estimate of the lenses with
  score >= t over that of all lenses, ``sum w y [s >= t] / sum w y`` over the top K and the
  random sample, at each bin's lowest catalog score and at the top K's lowest score, with a
  percentile interval from a parametric bootstrap stratified as the sample (each random
  stratum's lens fraction drawn from the Beta distributions of its Clopper-Pearson bounds,
  so a bin where no graded object is a lens still adds the lenses it could hide;
  :func:`completeness`).
- **Checks**: how many known lenses the graders called A or B (the graders' completeness),
  with a Wilson interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skysift.metrics import wilson_interval

#: Combined grades counted as a lens by the estimates.
LENS_GRADES = ("A", "B")


def strata(source: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Stratum of every page object: 0 the top K, 1 + b the random objects of bin b, -1 a
    check."""
    source, bins = np.asarray(source), np.asarray(bins, np.int64)
    return np.where(source == "top", 0, np.where(source == "random", 1 + bins, -1))


def _interval(draws: np.ndarray, ci: float) -> list[float] | None:
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return None
    alpha = (1.0 - ci) / 2.0
    return [float(x) for x in np.quantile(draws, [alpha, 1.0 - alpha])]


def _top_lenses_above(score, lens, graded, top, t, n_boot, rng) -> tuple[np.ndarray, np.ndarray]:
    """The top K's lenses with score >= each threshold (weighted ``K / g``): point (T,) and
    draws (n_boot, T); the graded top objects resampled unless all K are graded (a census)."""
    rows = np.flatnonzero(top & graded)
    if not rows.size:
        return np.zeros(t.size), np.zeros((n_boot, t.size))
    scale = top.sum() / rows.size
    hit = (lens[rows, None] & (score[rows, None] >= t[None, :])).astype(float)
    point = scale * hit.sum(0)
    if rows.size == top.sum():
        return point, np.broadcast_to(point, (n_boot, t.size)).copy()
    picks = rng.integers(0, rows.size, (n_boot, rows.size))
    return point, scale * hit[picks].sum(1)


def _fraction_draws(k: int, g: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of a stratum's lens fraction given k lenses among g graded: half from
    Beta(k, g - k + 1), half from Beta(k + 1, g - k), the two Beta distributions whose
    quantiles are the Clopper-Pearson bounds (Beta(0, .) is 0, Beta(., 0) is 1), so the
    interval holds k / g even at k = 0 or k = g."""
    upper = rng.random(n) < 0.5
    a, b = k + upper, g - k + ~upper
    out = np.where(a == 0, 0.0, 1.0)
    inside = (a > 0) & (b > 0)
    out[inside] = rng.beta(a[inside], b[inside])
    return out


def completeness(score: np.ndarray, lens: np.ndarray, graded: np.ndarray,
                 stratum: np.ndarray, weight: np.ndarray, bin_lo: np.ndarray,
                 thresholds: Sequence[float], n_boot: int, ci: float, seed: int) -> dict:
    """Completeness at each score threshold and the estimated lenses, with intervals.

    Per page object (m,): score, lens (graded A/B), graded, stratum (:func:`strata`),
    weight (recorded), bin_lo (its bin's lowest catalog score). The point values are the
    Horvitz-Thompson estimates, a graded object of stratum s weighing ``N_s / g_s``
    (module docstring). The intervals
    come from ``n_boot`` draws: each random stratum's lens fraction from
    :func:`_fraction_draws` (g graded, k lenses; resampling the g objects would give a
    zero-width interval in a stratum without a lens), the top K's graded objects resampled
    unless all were graded.
    A random stratum's lenses count above a threshold in the share its graded lenses do
    (all or none when the threshold is a bin edge), or as its bin when it has none.
    Returns {"total_lenses": {"value", "interval"}, "thresholds": [{"score", "value",
    "interval", "lenses_above"}], "population_without_grades"}; value None without lenses.
    """
    t = np.concatenate([[-np.inf], np.asarray(thresholds, float)])  # -inf: every lens
    rng = np.random.default_rng(seed)
    point, draws = _top_lenses_above(score, lens, graded, stratum == 0, t, n_boot, rng)
    ungraded = 0.0
    for s in np.unique(stratum[stratum > 0]):
        members = stratum == s
        population = float(np.nansum(weight[members]))
        g, k = int(np.sum(members & graded)), int(np.sum(members & graded & lens))
        if not g:
            ungraded += population
            continue
        found = members & graded & lens
        share = ((score[found, None] >= t[None, :]).mean(0) if k else
                 (bin_lo[members][0] >= t).astype(float))
        point += population * k / g * share
        fraction = _fraction_draws(k, g, n_boot, rng)
        draws += population * fraction[:, None] * share[None, :]
    total, totals = point[0], draws[:, 0]
    ratio = np.divide(draws[:, 1:], totals[:, None], out=np.full_like(draws[:, 1:], np.nan),
                      where=totals[:, None] > 0)
    return {"total_lenses": {"value": float(total), "interval": _interval(totals, ci)},
            "thresholds": [{"score": float(x), "lenses_above": float(n),
                            "value": float(n / total) if total > 0 else None,
                            "interval": _interval(ratio[:, k], ci) if total > 0 else None}
                           for k, (x, n) in enumerate(zip(t[1:], point[1:], strict=True))],
            "population_without_grades": ungraded}


def purity_by_bin(lens: np.ndarray, source: np.ndarray, bins: np.ndarray, bin_lo: np.ndarray,
                  bin_hi: np.ndarray, weight: np.ndarray, graded: np.ndarray, ci: float
                  ) -> list[dict]:
    """Per score bin: the graded random objects, the lenses among them, purity with its
    Wilson interval, the bin's population outside the top K and its estimated lenses, and
    the top K's graded objects and lenses in that bin (module docstring)."""
    out = []
    for b in np.unique(bins[(source == "random") | (source == "top")]):
        rand = (source == "random") & (bins == b)
        top = (source == "top") & (bins == b)
        n, k = int(np.sum(rand & graded)), int(np.sum(rand & graded & lens))
        population = float(np.nansum(weight[rand]))
        p = k / n if n else None
        lo, hi = wilson_interval(k, n, ci)
        at = np.flatnonzero(bins == b)[0]
        out.append({"bin": int(b), "score_lo": float(bin_lo[at]), "score_hi": float(bin_hi[at]),
                    "n_random": int(rand.sum()), "n_graded": n, "n_lenses": k, "purity": p,
                    "interval": [lo, hi] if n else None, "population": population,
                    "lenses": None if p is None else p * population,
                    "lenses_interval": [lo * population, hi * population] if n else None,
                    "top_graded": int(np.sum(top & graded)),
                    "top_lenses": int(np.sum(top & graded & lens))})
    return out


def recovery(lens: np.ndarray, graded: np.ndarray, mask: np.ndarray, ci: float) -> dict:
    """Known lenses (``mask``) graded, and called a lens (A or B), with a Wilson interval."""
    n, k = int(np.sum(mask & graded)), int(np.sum(mask & graded & lens))
    lo, hi = wilson_interval(k, n, ci)
    return {"n": int(mask.sum()), "n_graded": n, "n_called_lens": k,
            "fraction": k / n if n else None, "interval": [lo, hi] if n else None}


def sample_report(rows: Sequence[dict], grades: Sequence[str], n_boot: int, ci: float,
                  seed: int) -> dict:
    """Purity per bin, completeness per threshold and the checks' recovery (module
    docstring) of the page objects ``rows`` (the sample file's rows as text) given each
    one's combined grade (``''``: not graded)."""
    source = np.array([r["source"] for r in rows])
    score = np.array([float(r["score"]) for r in rows])
    bins = np.array([int(r["bin"]) for r in rows], np.int64)
    bin_lo = np.array([float(r["bin_lo"]) for r in rows])
    bin_hi = np.array([float(r["bin_hi"]) for r in rows])
    weight = np.array([float(r["weight"]) if r["weight"] else np.nan for r in rows])
    known = np.array([r["known"].strip() == "1" for r in rows], bool)
    graded = np.array([bool(g) for g in grades], bool)
    lens = np.array([g in LENS_GRADES for g in grades], bool)
    stratum = strata(source, bins)
    counted = source != "check"
    # every bin's lower edge but the lowest (the catalog's lowest score: completeness 1)
    thresholds = sorted({float(x) for x in bin_lo[counted & (bins > 0)]}
                        | ({float(score[source == "top"].min())} if np.any(source == "top")
                           else set()))
    return {
        "lens_grades": list(LENS_GRADES),
        "n": {s: int(np.sum(source == s)) for s in ("top", "random", "check")},
        "n_graded": {s: int(np.sum((source == s) & graded)) for s in ("top", "random", "check")},
        "purity_by_bin": purity_by_bin(lens, source, bins, bin_lo, bin_hi, weight, graded, ci),
        "completeness": completeness(score, lens, graded, stratum, weight, bin_lo, thresholds,
                                     n_boot, ci, seed),
        "checks": recovery(lens, graded, source == "check", ci),
        "known_on_page": recovery(lens, graded, known, ci),
        "ci": ci, "n_bootstrap": n_boot}
