"""The realism score: can a fixed discriminator tell the simulations from real objects?

When a training set holds real labelled objects beside simulations (``training_set.use``
``both``), a gradient-boosted classifier on the stamps' features (:mod:`skysift.stamps.
features`), with fixed settings and no tuning, is cross-validated to tell simulated positives
from real labelled positives, and each family of simulated hard negatives from real
negatives. Its out-of-fold AUROC is the realism score: 0.5, the simulations are
indistinguishable from real objects; 1, every one is recognisable (whatever the network
learns from it, it can learn to spot a simulation). The features that separate the two
most (univariate AUROC furthest from 0.5) say what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from skysift import metrics
from skysift.sim.trainfile import HARD, LABELLED, REAL, SIMULATED
from skysift.stamps.features import compute_features, feature_names
from skysift.stamps.featurespec import feature_spec

log = logging.getLogger(__name__)

#: The discriminator's fixed feature settings (the classical model's defaults).
FEATURES = {"radii_arcsec": (0.5, 1.0, 1.5, 2.5, 4.0), "border_pix": 4, "smooth_arcsec": 0.5,
            "seg_nsigma": 2.0, "hog_bins": 8}
#: Rows per side at most (a random subset): bounds the cost on large training sets.
MAX_PER_SIDE = 1500
#: Cross-validation folds; a side needs at least this many rows for a score.
FOLDS = 5
#: Features listed as the most separating.
N_TOP = 8
#: Stratified bootstrap of the out-of-fold scores: the score's 95 % interval (sampling of
#: the real objects, often a few dozen, dominates it).
N_BOOT, CI = 500, 0.95


#: Smallest stamp side (pixels) the discriminator's features measure.
MIN_SIZE_PIX = 16


def discriminate(x_sim: np.ndarray, x_real: np.ndarray, names: Sequence[str], seed: int
                 ) -> dict:
    """Out-of-fold AUROC of a fixed classifier telling ``x_sim`` (m, F) from ``x_real``
    (k, F), its bootstrap interval ``auroc_ci``, and the most separating features; ``auroc``
    None when a side has < FOLDS rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold

    out = {"auroc": None, "auroc_ci": None, "n_simulated": len(x_sim), "n_real": len(x_real),
           "top_features": []}
    if min(len(x_sim), len(x_real)) < FOLDS:
        return out
    x = np.concatenate([x_sim, x_real]).astype(np.float64)
    y = np.r_[np.ones(len(x_sim), np.int8), np.zeros(len(x_real), np.int8)]
    informative = [j for j in range(x.shape[1])  # all-NaN or constant columns say nothing
                   if np.unique(x[np.isfinite(x[:, j]), j]).size > 1]
    x, names = x[:, informative], [names[j] for j in informative]
    oof, seed = np.zeros(len(y)), seed % 2**32  # sklearn takes 32-bit seeds
    # one OpenMP thread: deterministic, and no spinning teams on a shared machine
    with threadpool_limits(1):
        for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(x, y):
            clf = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1,
                                                 max_leaf_nodes=15, l2_regularization=1.0,
                                                 class_weight="balanced", random_state=seed)
            oof[test] = clf.fit(x[train], y[train]).decision_function(x[test])
    single = [(metrics.auroc(np.nan_to_num(x[:, j], nan=-1e30), y), name)
              for j, name in enumerate(names)]
    single.sort(key=lambda t: -abs(t[0] - 0.5))
    ci = metrics.bootstrap(oof, y, N_BOOT, CI, seed, {"auroc": metrics.auroc})["auroc"]
    out.update(auroc=ci["value"], auroc_ci=[ci["lo"], ci["hi"]],
               top_features=[{"name": n, "auroc": a} for a, n in single[:N_TOP]])
    return out


def comparisons(label: np.ndarray, origin: np.ndarray, sim: np.ndarray
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (simulated rows, real rows)}: simulated vs labelled positives (``positives``),
    and each hard-negative family vs the real negatives (``hard:{kind}``)."""
    real_pos = np.flatnonzero((origin == LABELLED) & (label == 1))
    real_neg = np.flatnonzero(((origin == LABELLED) | (origin == REAL)) & (label == 0))
    out = {"positives": (np.flatnonzero((origin == SIMULATED) & (label == 1)), real_pos)}
    for kind in sorted(set(sim[origin == HARD].tolist())):
        name = kind.decode() if isinstance(kind, bytes) else str(kind)
        out[f"hard:{name}"] = (np.flatnonzero((origin == HARD) & (sim == kind)), real_neg)
    return out


def realism(images, label: np.ndarray, origin: np.ndarray, sim: np.ndarray, attrs: Mapping,
            seed: int) -> dict:
    """The realism score of every comparison of a training set (:func:`comparisons`).

    images : (n, band, s, s) array-like (an h5py dataset is read row by row set).
    """
    if images.shape[-1] < MIN_SIZE_PIX:
        log.warning("realism not scored: stamps of %d pixels, the features need %d",
                    images.shape[-1], MIN_SIZE_PIX)
        return {}
    spec = feature_spec(FEATURES, attrs)
    names = feature_names(spec)
    rng = np.random.default_rng(seed)
    pairs = {name: [np.sort(rng.permutation(rows)[:MAX_PER_SIDE]) for rows in sides]
             for name, sides in comparisons(label, origin, sim).items()}
    # each row's features once, though the real negatives serve every hard-negative family
    rows = np.unique(np.concatenate([np.zeros(0, int)] + [r for p in pairs.values() for r in p]))
    feats = np.zeros((0, len(names)))
    if rows.size:
        feats = np.concatenate([compute_features(np.asarray(images[part.tolist()]), spec)
                                for part in np.array_split(rows, -(-rows.size // 512))])
    return {name: discriminate(*(feats[np.searchsorted(rows, r)] for r in sides), names, seed)
            for name, sides in pairs.items()}
