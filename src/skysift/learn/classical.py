"""The ``classical`` model: stamp features (:mod:`skysift.stamps.features`) + boosted trees.

The lecture's "classical approach" and the baseline every lens/merger CNN paper compares
against: per-object features fed to scikit-learn's ``HistGradientBoostingClassifier``,
trained on the same training set and split as the CNNs (train split plus its augmented
copies; classes balanced once by repeating the minority class), its hyper-parameters tuned
only on the validation split (``classical.tune_trials`` draws from a grid, seeded from
``seed``) and then frozen. The fitted trees are pickled into a uint8 tensor of a normal
skysift checkpoint (``model_state.booster``, SHA-256 in ``meta.classical``), so
``torch.load(weights_only=True)`` still reads it; :class:`ClassicalModel` wraps them as a
``torch.nn.Module`` mapping stamps to logits, which is all ``skysift.score.infer`` needs.
Unpickling runs code: load classical checkpoints you trust only.

The trees' decision function ``f`` is over-confident (trees fitted to an oversampled set
overfit it), while every skysift logit must be the log-odds at a balanced prior
(:mod:`skysift.score.prior`). So the frozen trees get a Platt map ``z = a f + b`` fitted on the
validation split with both classes weighted alike (``classical.calibrate``; stored in
``meta.classical.calibration``). With ``a > 0`` the map is monotone: rankings, AUROC and
TPRs are those of ``f``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from skysift.errors import DataError
from skysift.io import atomic_output, open_h5
from skysift.metrics import auroc
from skysift.stamps.features import compute_features, feature_names
from skysift.stamps.featurespec import FeatureSpec

__all__ = ["ClassicalModel", "apply_calibration", "balance_classes", "booster_bytes",
           "fit_calibration", "fit_platt", "fit_tuned", "grid",
           "module_from_checkpoint", "permutation_importances", "read_features", "tree_nodes",
           "write_importance_plot"]

log = logging.getLogger(__name__)

#: keys of the ``classical`` block of a models[] entry that are hyper-parameter grids.
GRID_KEYS = ("max_iter", "learning_rate", "max_leaf_nodes", "l2_regularization")
READ_ROWS = 512
#: values of ``classical.calibrate``.
CALIBRATIONS = ("platt", "none")


def read_features(path: str | Path, rows: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Features (len(rows), F) of the stamps ``images[rows]`` (rows sorted) of an HDF5 file."""
    out = np.empty((len(rows), len(feature_names(spec))), dtype=np.float32)
    with open_h5(path, required=("images",)) as fh:
        images = fh["images"]
        for start in range(0, len(rows), READ_ROWS):
            part = rows[start:start + READ_ROWS]
            lo, hi = int(part[0]), int(part[-1]) + 1
            block = images[lo:hi][part - lo]  # one contiguous read, then select
            out[start:start + len(part)] = compute_features(block, spec)
    return out


def grid(settings: Mapping) -> list[dict]:
    """Every hyper-parameter combination of the ``classical`` block's grids."""
    values = [list(settings[k]) for k in GRID_KEYS]
    return [dict(zip(GRID_KEYS, combo, strict=True)) for combo in itertools.product(*values)]


def _classifier(params: Mapping, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(
        max_iter=int(params["max_iter"]), learning_rate=float(params["learning_rate"]),
        max_leaf_nodes=int(params["max_leaf_nodes"]),
        l2_regularization=float(params["l2_regularization"]), early_stopping=False,
        random_state=seed % 2**32)


def balance_classes(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat the minority class (whole repeats, then a seeded subset) until both count alike.

    The class balance of the CNNs' ``balance: sample``; for the trees it equals weighting the
    minority by n_major / n_minor, and is much faster than sklearn's ``class_weight``
    (weighted binning).
    """
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    small, big = (pos, neg) if len(pos) < len(neg) else (neg, pos)
    if not len(small):
        return x, y
    reps, rest = divmod(len(big) - len(small), len(small))
    pick = np.sort(np.random.default_rng(seed).permutation(len(small))[:rest])
    rows = np.concatenate([np.arange(len(y)), np.tile(small, reps), small[pick]])
    return x[rows], y[rows]


def fit_tuned(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
              settings: Mapping, seed: int) -> tuple[object, dict, list[dict]]:
    """Fit one classifier per drawn combination; keep the best on the validation split.

    Parameters
    ----------
    x_train, x_val : (n, F) float32 features; y_train, y_val : (n,) labels 0/1.
    settings : the models[] entry's ``classical`` block (grids and ``tune_trials``).
    seed : int
        Draws the combinations and seeds the trees: same seed, same model.

    Returns
    -------
    (classifier, its hyper-parameters, every trial as {params, val_auroc, ...}).
    Without validation examples the first drawn combination is kept (logged). The trees
    use as many OpenMP threads as torch (``train.threads``): more oversubscribes a shared
    machine, which slows HistGradientBoosting tenfold.
    """
    combos = grid(settings)
    x_train, y_train = balance_classes(x_train, y_train, seed)
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(combos))[:min(int(settings["tune_trials"]), len(combos))]
    trials, best = [], None
    has_val = len(y_val) > 0 and 0 < y_val.sum() < len(y_val)
    for i in picks if has_val else picks[:1]:
        with threadpool_limits(torch.get_num_threads(), user_api="openmp"):
            clf = _classifier(combos[i], seed).fit(x_train, y_train)
            val_auc = auroc(clf.decision_function(x_val), y_val) if has_val else math.nan
        trials.append({"params": combos[i], "val_auroc": val_auc})
        log.info("trial %d/%d %s: val AUROC %.4f", len(trials), len(picks), combos[i], val_auc)
        if best is None or val_auc > best[0]:
            best = (val_auc, clf, combos[i])
    if not has_val:
        log.warning("no validation examples of both classes: classical model kept with %s "
                    "untuned", best[2])
    return best[1], best[2], trials


def fit_platt(scores: np.ndarray, labels: np.ndarray, max_steps: int = 100
              ) -> tuple[float, float]:
    """Balanced-prior Platt map ``z = a * scores + b``: weighted logistic fit, Newton steps.

    Parameters
    ----------
    scores : (n,) float decision function (any scale); labels : (n,) 0/1, both classes.
    max_steps : int
        Newton steps at most (each halved until the loss stops rising); converges in ~10.

    Returns
    -------
    (a, b) floats minimising the log-loss with each class weighing 1/2 in total, so that
    ``z`` is the log-odds at a prior of 1/2 whatever the validation prevalence. Targets are
    Platt's (n_pos + 1) / (n_pos + 2) and 1 / (n_neg + 2), which keep ``a`` finite when the
    scores separate the classes. Deterministic. ``a`` may come out <= 0 when the scores rank
    the classes backwards; :func:`fit_calibration` refuses such a map.
    """
    f = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"a Platt fit needs both classes, got {n_pos} positives and "
                         f"{n_neg} negatives")
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    weight = np.where(y, 0.5 / n_pos, 0.5 / n_neg)
    # standardised scores keep the Newton system well conditioned at any scale of f
    mu, sd = float(np.mean(f)), float(np.std(f))
    sd = sd if sd > 0 else 1.0
    design = np.stack([(f - mu) / sd, np.ones_like(f)], axis=1)

    def loss(theta: np.ndarray) -> float:
        z = design @ theta
        return float(np.sum(weight * (np.logaddexp(0.0, z) - target * z)))

    theta = np.zeros(2)
    current = loss(theta)
    for _ in range(max_steps):
        z = design @ theta
        p = np.exp(-np.logaddexp(0.0, -z))
        grad = design.T @ (weight * (p - target))
        hess = (design * (weight * p * (1 - p))[:, None]).T @ design
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        scale = 1.0
        while scale > 1e-10 and loss(theta - scale * step) > current:
            scale /= 2
        theta = theta - scale * step
        previous, current = current, loss(theta)
        if previous - current <= 1e-15 * max(abs(previous), 1e-300):
            break
    a = theta[0] / sd
    return float(a), float(theta[1] - a * mu)


def fit_calibration(scores: np.ndarray, labels: np.ndarray, method: str) -> dict:
    """The calibration map of a classical model, fitted on its validation decision function.

    Parameters
    ----------
    scores : (n,) the frozen trees' decision function on the validation split.
    labels : (n,) 0/1 validation labels.
    method : ``classical.calibrate``: ``platt`` (:func:`fit_platt`) or ``none``.

    Returns
    -------
    ``{"method", "a", "b", "n_val_pos", "n_val_neg"}`` (JSON-ready; the checkpoint's
    ``meta.classical.calibration``). Without validation examples of both classes, or when
    the fit would reverse the ranking (a <= 0), the identity (a=1, b=0) is kept, method
    ``none``, and a warning logged.
    """
    if method not in CALIBRATIONS:
        raise ValueError(f"calibrate must be one of {CALIBRATIONS}, got {method!r}")
    y = np.asarray(labels).astype(bool)
    out = {"method": "none", "a": 1.0, "b": 0.0, "n_val_pos": int(y.sum()),
           "n_val_neg": int((~y).sum())}
    if method == "none":
        return out
    if not out["n_val_pos"] or not out["n_val_neg"]:
        log.warning("no validation examples of both classes (%d positives, %d negatives): "
                    "classical logits left uncalibrated (a=1, b=0)", out["n_val_pos"],
                    out["n_val_neg"])
        return out
    a, b = fit_platt(scores, y)
    if not (math.isfinite(a) and math.isfinite(b) and a > 0):
        log.warning("Platt fit on the validation split gave a=%.3g, b=%.3g (the trees rank "
                    "it backwards): classical logits left uncalibrated (a=1, b=0)", a, b)
        return out
    log.info("Platt calibration on %d validation examples (%d positives): logit = %.4g f "
             "%+.4g", len(y), out["n_val_pos"], a, b)
    return {**out, "method": "platt", "a": a, "b": b}


def apply_calibration(scores: np.ndarray, calib: Mapping) -> np.ndarray:
    """Calibrated logits (n,) float64 ``a * scores + b`` of a :func:`fit_calibration` map."""
    return float(calib["a"]) * np.asarray(scores, dtype=np.float64) + float(calib["b"])


def booster_bytes(clf) -> tuple[torch.Tensor, str]:
    """The pickled classifier as a uint8 tensor, and its hex SHA-256."""
    raw = pickle.dumps(clf, protocol=pickle.HIGHEST_PROTOCOL)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone(), \
        hashlib.sha256(raw).hexdigest()


def tree_nodes(clf) -> int:
    """Number of tree nodes of a fitted HistGradientBoosting model (its 'parameters')."""
    predictors = getattr(clf, "_predictors", [])
    return int(sum(len(p.nodes) for trees in predictors for p in trees))


class ClassicalModel(nn.Module):
    """Stamps ``(b, band, s, s)`` -> ``(b,)`` float32 logits via features and boosted trees.

    The logit is ``a * f + b`` of the trees' decision function ``f`` (a > 0; a=1, b=0: the
    raw trees). The features are computed on the CPU with numpy whatever the device of
    ``x``; the logits come back on ``x.device``. ``.to(device)``, ``eval()``, channels_last
    and autocast are harmless (there are no floating-point parameters).
    """

    def __init__(self, booster: torch.Tensor, spec: FeatureSpec, a: float = 1.0,
                 b: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("booster", booster.to(torch.uint8).flatten().cpu())
        self.spec = spec
        self.estimator = pickle.loads(self.booster.numpy().tobytes())
        self.a, self.b = float(a), float(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated logits (balanced-prior log-odds) of every stamp."""
        feats = compute_features(x.detach().float().cpu().numpy(), self.spec)
        with threadpool_limits(torch.get_num_threads(), user_api="openmp"):
            f = self.estimator.decision_function(feats)
        logits = apply_calibration(f, {"a": self.a, "b": self.b})
        return torch.as_tensor(logits.astype(np.float32)).to(x.device)


def module_from_checkpoint(ckpt: Mapping, path: str | Path) -> ClassicalModel:
    """The :class:`ClassicalModel` of a loaded classical checkpoint (hash checked first)."""
    info = ckpt["meta"].get("classical") or {}
    booster = ckpt["model_state"].get("booster") if isinstance(ckpt["model_state"],
                                                               Mapping) else None
    if booster is None or "features" not in info:
        raise DataError(f"{path}: classical checkpoint lacks model_state.booster or "
                        "meta.classical.features; delete it and re-run the train rule")
    sha = hashlib.sha256(booster.numpy().tobytes()).hexdigest()
    if sha != info.get("booster_sha256"):
        raise DataError(f"{path}: the booster's SHA-256 {sha[:12]} differs from the one "
                        "recorded; the file is damaged or altered: re-run the train rule")
    calib = info.get("calibration")
    if calib is None:
        log.warning("%s: classical checkpoint from before calibration: its logits are the "
                    "raw, over-confident decision function (a=1, b=0); re-run the train rule "
                    "to calibrate them", path)
        calib = {"a": 1.0, "b": 0.0}
    return ClassicalModel(booster, FeatureSpec.from_dict(info["features"]), calib["a"],
                          calib["b"])


def permutation_importances(clf, x_val: np.ndarray, y_val: np.ndarray, names: Sequence[str],
                            repeats: int, seed: int) -> list[dict]:
    """Drop of validation AUROC when each feature is permuted, largest first."""
    from sklearn.inspection import permutation_importance
    if len(y_val) == 0 or not 0 < y_val.sum() < len(y_val) or repeats == 0:
        return []
    with threadpool_limits(torch.get_num_threads(), user_api="openmp"):
        res = permutation_importance(clf, x_val, y_val, scoring="roc_auc", n_repeats=repeats,
                                     random_state=seed % 2**32)
    order = np.argsort(-res.importances_mean, kind="stable")
    return [{"feature": names[i], "mean": float(res.importances_mean[i]),
             "std": float(res.importances_std[i])} for i in order]


def write_importance_plot(path: str | Path, importances: Sequence[dict], trials: Sequence[dict],
                          title: str, top: int = 25) -> None:
    """PNG: validation AUROC of every tuning trial, and the top permutation importances."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5))
    FigureCanvasAgg(fig)
    ax_t, ax_i = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    aucs = [t["val_auroc"] for t in trials]
    ax_t.plot(range(1, len(aucs) + 1), aucs, "o")
    if aucs and all(math.isfinite(a) for a in aucs):
        best = int(np.argmax(aucs))
        ax_t.plot([best + 1], [aucs[best]], "*", ms=14, color="C3", label="kept")
        ax_t.legend(fontsize="small")
    ax_t.set(xlabel="tuning trial", ylabel="validation AUROC", title=f"{title}: tuning")
    shown = list(importances[:top])[::-1]
    if shown:
        ax_i.barh(range(len(shown)), [d["mean"] for d in shown],
                  xerr=[d["std"] for d in shown], color="C0")
        ax_i.set_yticks(range(len(shown)), [d["feature"] for d in shown], fontsize=7)
    else:
        ax_i.text(0.5, 0.5, "no validation split: no importances", ha="center",
                  transform=ax_i.transAxes)
    ax_i.set(xlabel="validation AUROC drop when permuted",
             title="permutation importance (validation split)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
