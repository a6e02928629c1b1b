"""Evaluate every model on the test split: AUROC, TPR0, TPR10, TPR at FPR 1e-3, intervals,
completeness binned by a labels-table column, purity at the stated prevalence, calibration.

Reads ``results/catalog.fits`` (``index``, ``id``, ``score_{task}_{model}`` logits; or the
folder of per-shard parts), ``results/split.fits`` (``index``, ``split``) and the labels table
(``survey.labels``), joins labels to the catalog by id exactly (int64 or str, never through a
float) and writes, for the test split only (the catalog is read in blocks of rows and only
its test rows are kept: :func:`skysift.evaluate.testrows.read_test_rows`)::

    metrics.json = {"split": "test", "provenance": {...}, "primary": {task: model},
      "tasks": {task: {"model": <primary model>, <its metrics>}},
      "models": {task: {model: {
        "score_column", "label_column", "model", "primary",
        "auroc", "auroc_ci": [lo, hi], "tpr0", "tpr0_ci", "tpr10", "tpr10_ci",
        "tpr_fpr1e-3", "tpr_fpr1e-3_ci",
        "n_catalog", "n_test", "n_pos", "n_neg", "n_unlabelled", "n_labels_unmatched",
        "n_bootstrap", "ci", "bootstrap_seed",
        "completeness": {"fpr_target", "threshold_logit", "n_fp_allowed", "n_fp", "fpr", "tpr",
          "bins": {name: {"column", "available": true, "kind": "numeric"|"categorical",
                          "n_pos", "n_detected", "n_unbinned", "bins": [{"name", "lo", "hi",
                          "n_pos", "n_detected", "completeness", "completeness_ci"}]}
                   | {"column", "available": false, "reason"}}},
        "purity": {"prevalence", "tpr0" | "tpr10" | "completeness_fpr": {"threshold_logit",
          "n_fp_allowed", "n_tp", "n_fp", "tpr", "fpr", "prevalence", "purity", "purity_ci"}},
        "calibration": {"prevalence_test", "binning", "n_bins", "ece", "ece_ci", "ece_null",
          "ece_null_ci", "bins": [{"n", "p_mean", "frac_pos", "frac_pos_ci"}]}}}}}

``n_test = n_pos + n_neg + n_unlabelled`` (test objects of the catalog); ``n_labels_unmatched``
counts labelled rows of the task whose id is not in the catalog (e.g. rejected off every tile).
Undefined values (a test split without both classes, a threshold of -inf) are written as null.

Completeness (:mod:`skysift.evaluate.completeness`): the threshold of each model is the loosest
logit threshold with at most ``floor(evaluate.completeness_fpr * n_neg)`` false positives on the
test negatives (the TPR0 threshold when there are fewer than ``1 / completeness_fpr``), and
the positives above it are counted in the bins of ``evaluate.completeness_bins`` (Wilson
intervals at ``evaluate.ci``; ``n_unbinned`` positives have no value or one outside the
edges, so the bins' ``n_pos`` plus ``n_unbinned`` is ``n_pos``). A bin column missing from
the labels table is ``available: false`` with the reason, logged, not an error.

Purity at ``evaluate.prevalence[task]`` (pi): ``t pi / (t pi + f (1 - pi))`` at the TPR0, TPR10
and completeness_fpr thresholds; ``purity_ci`` combines the Wilson intervals of t and f.

Calibration (:mod:`skysift.evaluate.calibration`): the probability the catalog would give at the
test split's own positive fraction, ``prior.probability(logit, n_pos / (n_pos + n_neg))``, against
the labels in ``evaluate.calibration_bins`` bins (``evaluate.calibration_binning``); ``ece_ci``
is a stratified bootstrap, ``ece_null`` the ECE a perfectly calibrated model would show.

Figures beside it: ROC curves (full, and the low-FPR end on a log axis), binned completeness
(one panel per binning, models side by side), purity against completeness at the stated
prevalence (one panel per task), and the reliability diagram (one panel per task).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from skysift import cli, metrics
from skysift.errors import DataError
from skysift.evaluate import calibration, completeness
from skysift.evaluate.figures import plot_roc
from skysift.evaluate.gap import attach_simulated
from skysift.evaluate.inputs import TEST, read_labels
from skysift.evaluate.testrows import read_test_rows
from skysift.io import provenance, write_json
from skysift.modelspec import model_specs, primary_specs
from skysift.score import prior
from skysift.seeds import derive_seed

log = logging.getLogger(__name__)

#: Value of the ``split`` column that marks the test split (0 train, 1 val, 2 test).
TEST_SPLIT = TEST


# --- pure core -------------------------------------------------------------------------

def task_seed(seed: int, task: str) -> int:
    """Bootstrap seed of one task: a stable hash of (config seed, task name), in [0, 2**63)."""
    return derive_seed(int(seed), task, sep=":", fold="shift")


def evaluate_task(scores: np.ndarray, labels: np.ndarray, n_boot: int, ci: float,
                  seed: int) -> dict:
    """Metrics of one task on the test objects, with stratified bootstrap intervals.

    scores : (n,) logits of the test objects (higher = more likely positive); labels : (n,)
    float, 1 positive, 0 negative, NaN unlabelled. Unlabelled objects are counted, not scored.
    Without both classes the metrics and intervals are NaN.
    """
    labelled = np.isfinite(labels)
    y = labels[labelled].astype(np.int8)
    s = np.asarray(scores, dtype=np.float64)[labelled]
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    out = {"n_test": int(labels.size), "n_pos": n_pos, "n_neg": n_neg,
           "n_unlabelled": int((~labelled).sum()), "n_bootstrap": int(n_boot), "ci": float(ci),
           "bootstrap_seed": int(seed)}
    nan = float("nan")
    if n_pos and n_neg:
        res = metrics.bootstrap(s, y, n_boot, ci, seed, metrics.ALL_METRICS)
    else:
        res = {name: {"value": nan, "lo": nan, "hi": nan} for name in metrics.ALL_METRICS}
    for name in metrics.ALL_METRICS:
        out[name] = res[name]["value"]
        out[f"{name}_ci"] = [res[name]["lo"], res[name]["hi"]]
    return out


def json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- I/O at the edges ------------------------------------------------------------------

def evaluate(config: Mapping, catalog_path: str | Path, split_path: str | Path
             ) -> tuple[dict, dict]:
    """Metrics of every model on the test split.

    Returns ({task: {model: metrics}}, figures), figures = {"roc": {"task/model": (fpr, tpr,
    auroc)}, "purity": {task: {model: (completeness, purity, marked points)}},
    "reliability": {task: {model: calibration}}, "completeness": {panel title: {model:
    binning}}}. Every model of a task is bootstrapped with the same resamples (seed of the
    task), so their intervals compare like with like.
    """
    specs = model_specs(config)
    primary = {task: spec.name for task, spec in primary_specs(config).items()}
    binnings = completeness.bin_specs(config)
    label_keys, label_values_by_task, bin_columns = read_labels(config, binnings)
    rows = read_test_rows(catalog_path, {f"{s.task}/{s.name}": s.column for s in specs},
                          split_path, label_keys)
    log.info("%s: %d objects, %d train, %d val, %d test", catalog_path, rows.n_catalog,
             *rows.n_split.tolist())
    pos, in_catalog = rows.label_pos, rows.in_catalog
    ecfg = config["evaluate"]
    results: dict[str, dict] = {t["name"]: {} for t in config["tasks"]}
    figures: dict[str, dict] = {"roc": {}, "purity": {}, "reliability": {}, "completeness": {}}
    for spec in specs:
        task, column = spec.task, spec.column
        values = label_values_by_task[task]
        labels = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
        scores = _test_scores(rows.scores[column], labels, rows.index, column, catalog_path)
        seed = task_seed(config["seed"], task)
        res = evaluate_task(scores, labels, ecfg["n_bootstrap"], ecfg["ci"], seed)
        label_col = next(t["label"] for t in config["tasks"] if t["name"] == task)
        res.update(model=spec.name, primary=spec.name == primary[task], score_column=column,
                   label_column=label_col, n_catalog=rows.n_catalog,
                   n_labels_unmatched=int((np.isfinite(values) & ~in_catalog).sum()))
        if not results[task]:
            _log_task_counts(task, res)
        labelled = np.isfinite(labels)
        task_bins = [b for b in binnings if b["task"] == task]
        cols = _task_bin_columns(task, task_bins, bin_columns, pos[labelled])
        res.update(model_extras(scores[labelled], labels[labelled].astype(np.int8), task_bins,
                                cols, ecfg, prior.prevalence_of(config, task), seed))
        results[task][spec.name] = res
        _add_figures(figures, task, spec.name, res, scores[labelled], labels[labelled],
                     task_bins)
    return results, figures


def _test_scores(scores: np.ndarray, labels: np.ndarray, index: np.ndarray, column: str,
                 catalog_path: str | Path) -> np.ndarray:
    """(n_test,) float64 logits ``scores`` of the test rows (catalog rows ``index``) in
    ``column``; DataError when a labelled one is not finite."""
    bad = np.isfinite(labels) & ~np.isfinite(scores)
    if bad.any():
        raise DataError(f"{catalog_path}: {int(bad.sum())} labelled test objects have "
                        f"non-finite '{column}' (e.g. index {index[bad][:5].tolist()}); "
                        "re-run infer for their tiles")
    return scores


def _log_task_counts(task: str, res: Mapping) -> None:
    """Log (once per task) a test split without both classes and the unmatched labels."""
    if not (res["n_pos"] and res["n_neg"]):
        log.warning("task %s: the test split has %d positives and %d negatives; "
                    "metrics need both classes and are written as null", task,
                    res["n_pos"], res["n_neg"])
    if res["n_labels_unmatched"]:
        log.info("task %s: %d labelled objects are not in the catalog (rejected or off "
                 "the survey)", task, res["n_labels_unmatched"])


def _task_bin_columns(task: str, task_bins: Sequence[Mapping], bin_columns: Mapping,
                      rows: np.ndarray) -> dict:
    """{bin name: its values at the labels-table ``rows`` (n,), or why it is unavailable}."""
    cols = {}
    for b in task_bins:
        col = bin_columns[(task, b["name"])]
        cols[b["name"]] = col if isinstance(col, str) else col[rows]
    return cols


def model_extras(scores: np.ndarray, labels: np.ndarray, bins: Sequence[Mapping],
                 columns: Mapping, ecfg: Mapping, prevalence: float, seed: int) -> dict:
    """Completeness, purity and calibration blocks of one model (labelled test objects (n,))."""
    out = completeness.summarize(scores, labels, bins, columns, ecfg["completeness_fpr"],
                                 prevalence, ecfg["ci"])
    out["calibration"] = calibration.calibrate(
        scores, labels, ecfg["calibration_bins"], ecfg["calibration_binning"],
        ecfg["n_bootstrap"], ecfg["ci"], seed)
    return out


def _add_figures(figures: dict, task: str, model: str, res: Mapping, scores: np.ndarray,
                 labels: np.ndarray, bins: Sequence[Mapping]) -> None:
    """Add one model's ROC, purity curve, reliability and binned completeness to ``figures``."""
    pur = res["purity"]
    if res["n_pos"] and res["n_neg"]:
        fpr, tpr, _ = metrics.roc_curve(scores, labels.astype(np.int8))
        figures["roc"][f"{task}/{model}"] = (fpr, tpr, res["auroc"])
        comp, purity = completeness.purity_curve(fpr, tpr, pur["prevalence"])
        names = {"tpr0": "TPR0", "tpr10": "TPR10", "completeness_fpr": "FPR target"}
        points = {label: (pur[key]["tpr"], pur[key]["purity"]) for key, label in names.items()}
    else:
        figures["roc"][f"{task}/{model}"] = (np.zeros(1), np.zeros(1), float("nan"))
        comp, purity, points = np.zeros(0), np.zeros(0), {}
    figures["purity"].setdefault(task, {})[model] = (comp, purity, points)
    figures["reliability"].setdefault(task, {})[model] = res["calibration"]
    for b in bins:
        title = f"{task}: {b['name']} ({b['column']})"
        figures["completeness"].setdefault(title, {})[model] = \
            res["completeness"]["bins"][b["name"]]


# --- command line ----------------------------------------------------------------------

def parser():
    """The ``skysift evaluate`` argument parser."""
    p = cli.parser("Metrics (AUROC, TPR0, TPR10, TPR at FPR 1e-3 with bootstrap intervals) "
                   "and ROC curves of every model on the test split.")
    p.add_argument("--catalog", required=True, help="scores catalog (results/catalog.fits)")
    p.add_argument("--split", required=True, help="split table (results/split.fits)")
    p.add_argument("--out", required=True, help="metrics JSON to write (results/metrics.json)")
    p.add_argument("--roc", required=True, help="ROC figure to write (results/roc.png)")
    p.add_argument("--completeness", required=True,
                   help="binned-completeness figure to write (results/completeness.png)")
    p.add_argument("--purity", required=True,
                   help="purity-completeness figure to write (results/purity.png)")
    p.add_argument("--reliability", required=True,
                   help="reliability diagram to write (results/reliability.png)")
    p.add_argument("--model-metrics", nargs="*", default=[],
                   help="the models' training metrics (results/models/*/*.metrics.json): "
                        "their simulated test rows, reported beside the real ones")
    return p


def _fmt(res: Mapping) -> str:
    def one(name: str) -> str:
        lo, hi = res[f"{name}_ci"]
        return f"{name} {res[name]:.3f} [{lo:.3f}, {hi:.3f}]"
    text = ", ".join(one(name) for name in metrics.ALL_METRICS)
    op = res["purity"]["completeness_fpr"]
    if op is not None:
        text += (f", at FPR {op['fpr']:.3g}: completeness {op['tpr']:.3f}, purity "
                 f"{op['purity']:.3g} at prevalence {op['prevalence']:g}")
    return text + f", ECE {res['calibration']['ece']:.3f}"


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    results, figures = evaluate(config, args.catalog, args.split)
    curves = figures["roc"]
    plot_roc(curves, args.roc)
    completeness.plot_completeness(figures["completeness"], args.completeness,
                                   config["evaluate"]["completeness_fpr"])
    completeness.plot_purity(figures["purity"], {task: prior.prevalence_of(config, task)
                                                 for task in figures["purity"]}, args.purity)
    calibration.plot_reliability(figures["reliability"], args.reliability)
    gaps = attach_simulated(results, args.model_metrics)
    primary = {task: spec.name for task, spec in primary_specs(config).items()}
    headline = {task: results[task][model] for task, model in primary.items()}
    prov = provenance(config, catalog=str(args.catalog), split=str(args.split),
                      labels=str(config["survey"]["labels"]))
    write_json(args.out, json_safe({"tasks": headline, "models": results, "primary": primary,
                                    "provenance": prov, "split": "test"}))
    seconds = time.perf_counter() - start
    n_test = next(iter(headline.values()))["n_test"] if headline else 0
    summary = "; ".join(f"{task}/{model}: {_fmt(res)} ({res['n_pos']}+/{res['n_neg']}-)"
                        for task, by_model in results.items()
                        for model, res in by_model.items())
    log.info("evaluate: %d models of %d tasks on %d test objects -> %s and 4 figures in "
             "%.1f s; %s", len(curves), len(results), n_test, args.out, seconds, summary)
    for line in gaps:
        log.info("sim→real: %s", line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluate step; returns the exit code (2 for user errors)."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
