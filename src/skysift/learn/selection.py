"""Which validation rows decide, and metrics per origin: real labels lead.

A training set mixes rows of several origins (``origin`` dataset, docs/formats.md): real
labelled objects, real unlabelled objects taken as negatives, simulated positives and
simulated hard negatives. Where labelled validation rows of both classes exist, they alone
decide the kept epoch, early stopping, the classical model's tuning and calibration;
simulated rows are reported beside them, never decisive. Without them (a purely simulated
set, or labels of one class only) every validation row decides, as before.
"""

from __future__ import annotations

import math

import numpy as np

from skysift import metrics
from skysift.sim.trainfile import LABELLED

#: Groups of rows reported separately: every row, the real labelled rows, the rest
#: (simulated positives and hard negatives with the real unlabelled negatives).
GROUPS = ("all", "labelled", "simulated")


def group_masks(origin: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (n,) of :data:`GROUPS` for rows of ``origin`` (n,) uint8."""
    origin = np.asarray(origin)
    labelled = origin == LABELLED
    return {"all": np.ones(origin.shape, bool), "labelled": labelled, "simulated": ~labelled}


def both_classes(labels: np.ndarray) -> bool:
    """Whether ``labels`` (n,) holds at least one positive and one negative."""
    n_pos = int(np.sum(np.asarray(labels) == 1))
    return 0 < n_pos < len(labels)


def decisive_rows(labels: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, str]:
    """The validation rows (mask (n,)) that select the model, and the group's name.

    The real labelled rows when they hold both classes, else every row.
    """
    labelled = group_masks(origin)["labelled"]
    if labelled.any() and both_classes(np.asarray(labels)[labelled]):
        return labelled, "labelled"
    return np.ones(len(labels), bool), "all"


def ranking(scores: np.ndarray, labels: np.ndarray) -> dict:
    """AUROC, TPR0 and TPR10 with the class counts; None where a class is missing."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    n_pos = int((labels == 1).sum())
    out = {"n_pos": n_pos, "n_neg": int(len(labels) - n_pos),
           "auroc": None, "tpr0": None, "tpr10": None}
    if both_classes(labels) and np.isfinite(scores).all():
        out.update(auroc=metrics.auroc(scores, labels), tpr0=metrics.tpr0(scores, labels),
                   tpr10=metrics.tpr10(scores, labels))
    return out


def group_ranking(scores: np.ndarray, labels: np.ndarray, origin: np.ndarray) -> dict:
    """:func:`ranking` of every group of :data:`GROUPS` with rows."""
    return {name: ranking(np.asarray(scores)[mask], np.asarray(labels)[mask])
            for name, mask in group_masks(origin).items() if mask.any()}


def auroc_or_nan(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``scores`` for ``labels``, NaN when a class is missing."""
    return metrics.auroc(scores, labels) if both_classes(labels) else math.nan
