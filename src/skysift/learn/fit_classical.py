"""Fit the classical baseline (features + boosted trees) of one task: the train step's path for
models whose architecture is ``classical`` (docs/models.md)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skysift.errors import ConfigError, DataError
from skysift.io import write_json
from skysift.learn.checkpoints import (
    save_checkpoint,
)
from skysift.learn.loader import TrainData, open_data, read_test_split
from skysift.learn.runinfo import derive_seed, finite_or_none, model_meta
from skysift.learn.runtime import torch_runtime
from skysift.learn.selection import decisive_rows, group_ranking
from skysift.metrics import auroc
from skysift.modelspec import ModelSpec
from skysift.stamps.featurespec import feature_spec

if TYPE_CHECKING:
    from skysift.stamps.featurespec import FeatureSpec

log = logging.getLogger(__name__)


@dataclass
class _Fitted:
    """A tuned, calibrated classifier and its inputs: features (n, n_features), labels (n,)."""

    x_train: np.ndarray
    x_val: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray
    clf: object
    params: dict
    trials: list[dict]
    calib: dict
    val_logits: np.ndarray
    importances: list[dict]
    feature_s: float
    fit_s: float
    seconds: float
    selected_on: str


def train_classical(config: dict, spec: ModelSpec, trainset: str | Path,
                    augmented: str | Path | None, out: str | Path, metrics_path: str | Path,
                    curve_path: str | Path) -> dict:
    """Fit, tune (validation split only) and freeze a ``classical`` model; same outputs as a CNN.

    The checkpoint has the CNN keys (empty optimiser/scheduler/scaler/RNG states) with the
    pickled trees in ``model_state.booster``; the metrics JSON has the CNN keys (no epochs)
    plus ``classical`` (hyper-parameters, trials, importances); ``curve_path`` gets the
    tuning trials and the permutation importances (PNG).
    """
    from skysift.learn import classical
    from skysift.stamps.features import feature_names

    data = _open_classical(spec, trainset, augmented)
    meta = model_meta(config, spec, data.attrs, data.shape,
                      {"trainset": str(trainset), "augmented": str(augmented or "")})
    fspec = feature_spec(spec.classical, data.attrs)
    names = feature_names(fspec)
    seed = derive_seed(config["seed"], spec.task, "classical", spec.name)
    fit = _fit(data, spec, fspec, names, seed, trainset)
    _save(out, fit, fspec, names, config, meta)
    metrics = _metrics(spec, data, fit, names, meta)
    metrics["test"] = _test_ranking(fit, fspec, trainset, spec.train["threads"])
    write_json(metrics_path, metrics)
    classical.write_importance_plot(curve_path, fit.importances, fit.trials,
                                    f"{spec.task}/{spec.name}")
    log.info("trained %s/%s (classical, %d features, %d tree nodes, %s): val AUROC %s on %d "
             "examples (%d augmented), %d val, features %.1f s (%.0f objects/s), %d trials "
             "%.1f s -> %s", spec.task, spec.name, len(names), meta["parameters"], fit.params,
             metrics["best_val_auroc"], len(fit.y_train), data.n_augmented, len(fit.y_val),
             fit.feature_s, metrics["classical"]["features_per_s"], len(fit.trials), fit.fit_s,
             out)
    return metrics


def _open_classical(spec: ModelSpec, trainset: str | Path, augmented: str | Path | None
                    ) -> TrainData:
    """The training data of a one-member classical model, checked to be for its task."""
    if spec.members != 1:
        raise ConfigError(f"models '{spec.name}': members={spec.members}, but a classical "
                          "model is deterministic (one set of trees); set members: 1")
    data = open_data(trainset, augmented if spec.classical["use_augmented"] else None)
    if data.attrs.get("task", spec.task) != spec.task:
        raise DataError(f"{trainset}: a training set for task '{data.attrs['task']}', not "
                        f"'{spec.task}'; pass results/train/{spec.task}.h5")
    return data


def _fit(data: TrainData, spec: ModelSpec, fspec: FeatureSpec, names: list[str], seed: int,
         trainset: str | Path) -> _Fitted:
    """Compute the features, tune and calibrate the trees, rank the features (timed)."""
    from skysift.learn import classical
    from skysift.stamps.features import compute_features

    settings = spec.classical
    t0 = time.perf_counter()
    with torch_runtime(spec.train["threads"], deterministic=True):
        x_train = np.concatenate([classical.read_features(s.path, s.rows, fspec)
                                  for s in data.sources])
        x_val = compute_features(data.x_val.numpy(), fspec)
        feature_s = time.perf_counter() - t0
        y_train, y_val = data.labels, data.y_val.numpy()
        decisive, selected_on = decisive_rows(y_val, data.val_origin)
        if selected_on == "labelled":  # real labels lead: tune and calibrate on them alone
            log.info("classical %s/%s: tuning and calibration on the %d real labelled "
                     "validation rows of %d", spec.task, spec.name, int(decisive.sum()),
                     len(y_val))
            x_val, y_val = x_val[decisive], y_val[decisive]
        if not 0 < y_train.sum() < len(y_train):
            raise DataError(f"{trainset}: the training examples hold {int(y_train.sum())} "
                            f"positives of {len(y_train)}; a classifier needs both classes")
        clf, params, trials = classical.fit_tuned(x_train, y_train, x_val, y_val, settings,
                                                  seed)
        fit_s = time.perf_counter() - t0 - feature_s
        raw_val = clf.decision_function(x_val) if len(y_val) else np.zeros(0)
        calib = classical.fit_calibration(raw_val, y_val, settings["calibrate"])
        val_logits = classical.apply_calibration(raw_val, calib)
        importances = classical.permutation_importances(
            clf, x_val, y_val, names, settings["importance_repeats"], seed)
    seconds = time.perf_counter() - t0
    return _Fitted(x_train, x_val, y_train, y_val, clf, params, trials, calib, val_logits,
                   importances, feature_s, fit_s, seconds, selected_on)


def _test_ranking(fit: _Fitted, fspec: FeatureSpec, trainset: str | Path, threads: int) -> dict:
    """Ranking metrics of the training set's test split, per origin group."""
    from skysift.learn import classical
    from skysift.stamps.features import compute_features

    x_test, y_test, origin = read_test_split(trainset)
    with torch_runtime(threads, deterministic=True):
        raw = fit.clf.decision_function(compute_features(x_test, fspec)) if len(y_test) \
            else np.zeros(0)
    return group_ranking(classical.apply_calibration(raw, fit.calib), y_test, origin)


def _save(out: str | Path, fit: _Fitted, fspec: FeatureSpec, names: list[str], config: dict,
          meta: dict) -> None:
    """Write the checkpoint (CNN keys, pickled trees); adds the tree facts to ``meta``."""
    from skysift.learn import classical

    booster, sha = classical.booster_bytes(fit.clf)
    meta["parameters"] = classical.tree_nodes(fit.clf)
    meta["classical"] = {"features": fspec.to_dict(), "feature_names": names,
                         "booster_sha256": sha, "hyperparameters": fit.params,
                         "calibration": fit.calib, "sklearn_version": _sklearn_version()}
    save_checkpoint(out, {"model_state": {"booster": booster}, "optimizer_state": {},
                          "scheduler_state": {}, "scaler_state": {}, "rng_state": {},
                          "epoch": 0, "best_epoch": 0, "member": 0, "member_records": [],
                          "tuning": fit.trials, "config": config, "meta": meta})


def _metrics(spec: ModelSpec, data: TrainData, fit: _Fitted, names: list[str], meta: dict) -> dict:
    """The metrics JSON: the CNN keys (no epochs) plus ``classical``."""
    y_train, y_val = fit.y_train, fit.y_val
    has_val = len(y_val) > 0
    val_loss = _log_loss(fit.val_logits, y_val) if has_val else math.nan
    n_feat = len(fit.x_train) + len(fit.x_val)
    return {
        "task": spec.task, "model": spec.name, "architecture": spec.architecture,
        "members": 1, "parameters": meta["parameters"], "device": "cpu", "precision": "fp32",
        "epochs": [], "member_records": [], "best_epoch": None,
        "best_val_loss": finite_or_none(val_loss),
        "best_val_auroc": finite_or_none(auroc(fit.val_logits, y_val) if has_val else math.nan),
        "early_stopped": False, "seconds": fit.seconds,
        "samples_per_s": len(fit.x_train) * len(fit.trials) / max(fit.fit_s, 1e-9),
        "n_train": data.n_original, "n_augmented": data.n_augmented, "n_val": len(y_val),
        "balance": "sample", "pos_weight": float((len(y_train) - y_train.sum())
                                                         / y_train.sum()),
        "selected_on": fit.selected_on, "provenance": meta["provenance"],
        "classical": {"hyperparameters": fit.params, "trials": fit.trials,
                      "calibration": fit.calib, "n_features": len(names),
                      "feature_seconds": fit.feature_s,
                      "features_per_s": n_feat / max(fit.feature_s, 1e-9),
                      "fit_seconds": fit.fit_s, "importances": fit.importances},
    }


def _log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean (unweighted) binary cross-entropy of logits."""
    z = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.logaddexp(0, z) - labels * z))


def _sklearn_version() -> str:
    import sklearn
    return sklearn.__version__
