"""Completeness binned by a property of the positives, and purity at a stated prevalence.

Pure functions over numpy arrays; :mod:`skysift.evaluate.evaluate` reads the files and writes the
results. Scores are logits (higher = more likely positive) and labels 0/1, as in
:mod:`skysift.metrics`, whose thresholds these reproduce: an operating point allowing ``n_fp``
false positives puts the threshold at the ``(n_fp + 1)``-th highest negative score and counts
an object as detected when its score is strictly above it.

Purity (Metcalf+19's contamination, turned around) at a threshold with true-positive rate
``t`` and false-positive rate ``f``, among objects whose positive fraction is ``pi``::

    purity = t * pi / (t * pi + f * (1 - pi))

The test split's own class balance does not enter: only ``t`` and ``f`` are measured on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.errors import ConfigError
from skysift.io import atomic_output
from skysift.metrics import wilson_interval

log = logging.getLogger(__name__)


def fp_allowed(fpr: float, n_neg: int) -> int:
    """False positives a false-positive rate ``fpr`` admits among ``n_neg`` negatives.

    ``floor(fpr * n_neg)``, as :func:`skysift.metrics.tpr_at_fpr` (the epsilon keeps e.g.
    0.01 * 300 from flooring to 2 through rounding).
    """
    return int(np.floor(fpr * n_neg + 1e-9))


def threshold_at_fp(neg_scores: np.ndarray, n_fp: int) -> float:
    """Logit threshold admitting at most ``n_fp`` false positives: the ``(n_fp + 1)``-th highest
    negative score (-inf when there are at most ``n_fp`` negatives). Detected: score > it."""
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64))[::-1]
    return float(neg[n_fp]) if neg.size > n_fp else float("-inf")


def purity(tpr, fpr, prevalence: float):
    """Purity ``t pi / (t pi + f (1 - pi))`` of the objects above a threshold (NaN if none are).

    tpr, fpr : scalars or arrays of equal shape; prevalence : positive fraction in (0, 1).
    """
    t, f = np.asarray(tpr, dtype=np.float64), np.asarray(fpr, dtype=np.float64)
    num = t * prevalence
    den = num + f * (1.0 - prevalence)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def operating_point(scores: np.ndarray, labels: np.ndarray, n_fp: int, prevalence: float,
                    ci: float) -> dict:
    """TPR, FPR and purity at prevalence at the threshold admitting ``n_fp`` false positives.

    scores : (n,) logits; labels : (n,) 0/1, both classes present. ``purity_ci`` combines the
    Wilson intervals of TPR and FPR (low TPR with high FPR, and the reverse): conservative,
    and finite at zero false positives, where the point value is 1.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    thr = threshold_at_fp(neg, n_fp)
    k_tp, k_fp = int((pos > thr).sum()), int((neg > thr).sum())
    t_lo, t_hi = wilson_interval(k_tp, pos.size, ci)
    f_lo, f_hi = wilson_interval(k_fp, neg.size, ci)
    tpr, fpr = k_tp / pos.size, k_fp / neg.size
    return {"threshold_logit": thr, "n_fp_allowed": int(n_fp), "n_tp": k_tp, "n_fp": k_fp,
            "tpr": tpr, "fpr": fpr, "prevalence": float(prevalence),
            "purity": purity(tpr, fpr, prevalence),
            "purity_ci": [purity(t_lo, f_hi, prevalence), purity(t_hi, f_lo, prevalence)]}


def purity_curve(fpr: np.ndarray, tpr: np.ndarray, prevalence: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(completeness (k,), purity (k,)) along a ROC curve (:func:`skysift.metrics.roc_curve`),
    dropping the origin, where nothing is selected and purity is undefined."""
    keep = (np.asarray(fpr) > 0) | (np.asarray(tpr) > 0)
    return np.asarray(tpr)[keep], purity(np.asarray(tpr)[keep], np.asarray(fpr)[keep], prevalence)


def check_spec(spec: Mapping, where: str) -> None:
    """Raise ConfigError unless a completeness_bins entry has increasing edges and as many
    ``bin_names`` as intervals."""
    edges = spec.get("edges")
    if edges is None:
        if spec.get("bin_names"):
            raise ConfigError(f"key '{where}.bin_names': a categorical binning (edges null) is "
                              "named by its values; remove bin_names or give edges")
        return
    if np.any(np.diff(np.asarray(edges, dtype=np.float64)) <= 0):
        raise ConfigError(f"key '{where}.edges': edges must increase strictly, got {list(edges)}")
    names = spec.get("bin_names")
    if names is not None and len(names) != len(edges) - 1:
        raise ConfigError(f"key '{where}.bin_names': {len(names)} names for {len(edges) - 1} bins "
                          f"(edges {list(edges)}); give one name per interval")


def bin_specs(config: Mapping) -> list[dict]:
    """The ``evaluate.completeness_bins`` entries of configured tasks, checked (ConfigError)."""
    tasks = {t["name"] for t in config["tasks"]}
    specs, seen = [], set()
    for i, spec in enumerate(config["evaluate"]["completeness_bins"]):
        where = f"evaluate.completeness_bins[{i}]"
        check_spec(spec, where)
        if (spec["task"], spec["name"]) in seen:
            raise ConfigError(f"key '{where}.name': task {spec['task']} already has a binning "
                              f"named {spec['name']}; give each binning of a task its own name")
        seen.add((spec["task"], spec["name"]))
        if spec["task"] in tasks:
            specs.append(spec)
        else:
            log.debug("completeness binning %s skipped: task %s is not configured",
                      spec["name"], spec["task"])
    return specs


def label_column(table: Table, spec: Mapping, path: str | Path) -> np.ndarray | str:
    """A labels-table column to bin by, (m,): float64 with NaN where masked for numeric edges,
    str with "" where masked for a categorical binning; or why it is unavailable (str)."""
    name = spec["column"]
    if name not in table.colnames:
        return f"column '{name}' is not in the labels table {path}"
    col = table[name]
    data, mask = np.ma.getdata(col), np.ma.getmaskarray(col)
    numeric = data.dtype.kind in "biuf"
    if spec.get("edges") is not None:
        if not numeric:
            return (f"column '{name}' of {path} holds {data.dtype} values; numeric edges need "
                    "numbers (set edges: null to bin it by value)")
        values = data.astype(np.float64)
        values[mask] = np.nan
        return values
    if data.dtype.kind == "f":
        mask = mask | np.isnan(data)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "utf-8")
    text = np.char.strip(data.astype(str))
    text[mask] = ""
    return text


def bin_numeric(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin of each value (n,) int64: i for edges[i] <= v < edges[i+1] (the last bin also takes
    v == edges[-1]); -1 for NaN or values outside [edges[0], edges[-1]]."""
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right") - 1
    idx[v == e[-1]] = e.size - 2
    idx[~np.isfinite(v) | (v < e[0]) | (v > e[-1])] = -1
    return idx.astype(np.int64)


def completeness_by_bin(values: np.ndarray, detected: np.ndarray, edges: Sequence[float] | None,
                        ci: float, bin_names: Sequence[str] | None = None) -> dict:
    """Completeness of positives in bins of a property.

    values : (n,) the property of each positive: numbers (NaN where unknown) for numeric
    ``edges``, or strings ("" where unknown) when ``edges`` is None (one bin per distinct
    value, sorted). detected : (n,) bool. Returns {"kind", "n_pos", "n_detected",
    "n_unbinned", "bins": [{"name", "lo", "hi", "n_pos", "n_detected", "completeness",
    "completeness_ci"}]}; ``lo``/``hi`` are None for categorical bins. The bins' ``n_pos``
    plus ``n_unbinned`` (unknown or outside the edges) is ``n_pos``.
    """
    det = np.asarray(detected, dtype=bool)
    if edges is None:
        uniq, idx = np.unique(np.asarray(values).astype(str), return_inverse=True)
        cats = uniq.tolist()
        if "" in cats:  # np.unique sorts "" first
            cats, idx = cats[1:], idx - 1
        idx = idx.astype(np.int64).reshape(-1)
        bins = [{"name": c, "lo": None, "hi": None} for c in cats]
        kind = "categorical"
    else:
        idx = bin_numeric(values, edges)
        pairs = zip(edges[:-1], edges[1:], strict=True)
        names = bin_names or [f"[{lo:g}, {hi:g})" for lo, hi in pairs]
        bins = [{"name": names[i], "lo": float(edges[i]), "hi": float(edges[i + 1])}
                for i in range(len(edges) - 1)]
        kind = "numeric"
    for i, b in enumerate(bins):
        inside = idx == i
        n, k = int(inside.sum()), int(det[inside].sum())
        b.update(n_pos=n, n_detected=k, completeness=k / n if n else float("nan"),
                 completeness_ci=list(wilson_interval(k, n, ci)))
    return {"kind": kind, "n_pos": int(det.size), "n_detected": int(det.sum()),
            "n_unbinned": int((idx < 0).sum()), "bins": bins}


def _figure(n_panels: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(max(n_panels, 1), 3)
    rows = -(-max(n_panels, 1) // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())


def plot_completeness(panels: Mapping[str, Mapping[str, Mapping]], path, fpr: float) -> None:
    """Write a PNG of binned completeness atomically: one panel per binning, models side by side.

    panels : {"task: name (column)": {model: binning result}}, where a result is
    :func:`completeness_by_bin`'s output or {"available": False, "reason": str}.
    Error bars are the Wilson intervals; the threshold of each model gives ``fpr``.
    """
    fig, axes = _figure(len(panels), 4.8, 3.8)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for ax, (title, by_model) in zip(axes, panels.items(), strict=False):
        ax.set_title(title, fontsize="medium")
        width = 0.8 / max(len(by_model), 1)
        names: list[str] = []
        for m, (model, res) in enumerate(by_model.items()):
            if not res.get("bins"):
                why = res.get("reason", "no positives in the test split")
                ax.text(0.5, 0.5 - 0.1 * m, f"{model}: {why}", ha="center", va="center",
                        transform=ax.transAxes, fontsize="small", wrap=True)
                continue
            # every model of a task sees the same positives: one count per bin
            names = [f"{b['name']}\n(n={b['n_pos']})" for b in res["bins"]]
            x = np.arange(len(names)) - 0.4 + width * (m + 0.5)
            c = np.array([b["completeness"] for b in res["bins"]], dtype=np.float64)
            ci = np.array([b["completeness_ci"] for b in res["bins"]], dtype=np.float64).T
            err = np.nan_to_num(np.abs(ci - c))
            ax.errorbar(x, c, yerr=err, fmt="o", ms=5, capsize=3, label=model)
        ax.set_xticks(np.arange(len(names)), names, fontsize="small")
        ax.set_xlim(-0.6, max(len(names), 1) - 0.4)
        ax.set_ylim(-0.02, 1.05)
        ax.set_ylabel(f"completeness at FPR <= {fpr:g}")
        ax.grid(alpha=0.3, axis="y")
        if names:
            ax.legend(loc="lower right", fontsize="small")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def plot_purity(curves: Mapping[str, Mapping[str, tuple]], prevalence: Mapping[str, float],
                path) -> None:
    """Write a PNG of purity against completeness at the stated prevalence, one panel per task.

    curves : {task: {model: (completeness (k,), purity (k,), marked operating points
    {name: (completeness, purity)})}}; prevalence : {task: pi}. Purity on a log axis; the
    dashed line is pi, the purity of a random selection.
    """
    fig, axes = _figure(len(curves), 4.8, 4.0)
    for ax in axes[len(curves):]:
        ax.set_axis_off()
    for ax, (task, by_model) in zip(axes, curves.items(), strict=False):
        pi = bottom = prevalence[task]
        for model, (comp, pur, points) in by_model.items():
            if comp.size == 0:
                ax.plot([], [], label=f"{model}: undefined (test split lacks a class)")
                continue
            (line,) = ax.plot(comp, pur, lw=1.4, label=model)
            bottom = min(bottom, float(np.nanmin(pur[pur > 0], initial=pi)))
            marks: dict[tuple[float, float], list[str]] = {}
            for name, (c, p) in points.items():
                if np.isfinite(c) and np.isfinite(p):
                    marks.setdefault((c, p), []).append(name)
            for j, ((c, p), names) in enumerate(marks.items()):  # coinciding: one label
                ax.plot(c, p, "o", ms=5, color=line.get_color())
                ax.annotate(", ".join(names), (c, p), textcoords="offset points",
                            xytext=(4, 4 - 9 * j), fontsize="x-small")
        ax.axhline(pi, ls="--", lw=0.8, color="grey", label=f"prevalence {pi:g}")
        ax.set_yscale("log")
        ax.set_ylim(bottom / 2, 1.3)
        ax.set_xlim(-0.01, 1.01)
        ax.set_xlabel("completeness (TPR, test split)")
        ax.set_ylabel(f"purity at prevalence {pi:g}")
        ax.set_title(f"{task}: purity vs completeness")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def summarize(scores: np.ndarray, labels: np.ndarray, specs: Sequence[Mapping],
              columns: Mapping[str, np.ndarray | str], fpr_target: float, prevalence: float,
              ci: float) -> dict:
    """Binned completeness and purity of one model on the labelled test objects.

    scores : (n,) logits; labels : (n,) 0/1; specs : the task's ``evaluate.completeness_bins``
    entries; columns : {spec name: (n,) values aligned with scores, or a str saying why the
    column is unavailable}. Returns {"completeness": {"fpr_target", "threshold_logit",
    "n_fp_allowed", "n_fp", "fpr", "tpr", "bins": {name: ...}}, "purity": {"prevalence",
    "tpr0", "tpr10", "completeness_fpr": operating points}}; without both classes the
    operating points are None and every binning says why it is unavailable.
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not (n_pos and n_neg):
        why = f"the test split has {n_pos} positives and {n_neg} negatives"
        bins = {sp["name"]: {"column": sp["column"], "available": False, "reason": why}
                for sp in specs}
        return {"completeness": {"fpr_target": float(fpr_target), "bins": bins},
                "purity": {"prevalence": float(prevalence), "tpr0": None, "tpr10": None,
                           "completeness_fpr": None}}
    ops = {name: operating_point(s, y, k, prevalence, ci)
           for name, k in (("tpr0", 0), ("tpr10", 9),
                           ("completeness_fpr", fp_allowed(fpr_target, n_neg)))}
    thr = ops["completeness_fpr"]["threshold_logit"]
    detected = s[y] > thr
    bins = {}
    for sp in specs:
        col = columns[sp["name"]]
        if isinstance(col, str):
            bins[sp["name"]] = {"column": sp["column"], "available": False, "reason": col}
            continue
        res = completeness_by_bin(np.asarray(col)[y], detected, sp.get("edges"), ci,
                                  sp.get("bin_names"))
        bins[sp["name"]] = {"column": sp["column"], "available": True, **res}
    op = ops["completeness_fpr"]
    comp = {"fpr_target": float(fpr_target),
            **{k: op[k] for k in ("threshold_logit", "n_fp_allowed", "n_fp", "fpr", "tpr")},
            "bins": bins}
    return {"completeness": comp, "purity": {"prevalence": float(prevalence), **ops}}
