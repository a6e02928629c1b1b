"""Logits, priors and prevalence: turning a classifier's logit into honest odds.

Every model is trained on class-balanced data (``train.balance``: weighted loss or balanced
batches), so its logit ``z`` estimates log-odds at a prior of 1/2. Among the objects of a
survey a lens is rare (``evaluate.prevalence``, e.g. 10^-3), and by Bayes' rule the
log-odds there are ``z + logit(prevalence) - logit(train_prior)``. A balanced-set
probability ``sigmoid(z)`` is never presented as the odds of being a lens.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from skysift.errors import ConfigError

#: Effective prior of the positive class during training (both balance modes give 1/2).
TRAIN_PRIOR = 0.5


def logit(p) -> np.ndarray:
    """log(p / (1 - p)) of probabilities in (0, 1), float64."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    """1 / (1 + exp(-z)), float64, without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def shift_logits(logits, prevalence: float, train_prior: float = TRAIN_PRIOR) -> np.ndarray:
    """Logits (n,) re-expressed at a new class prior: z + logit(prevalence) - logit(train_prior).

    The ranking is unchanged (a constant shift); NaN stays NaN.
    """
    if not 0.0 < prevalence < 1.0 or not 0.0 < train_prior < 1.0:
        raise ValueError(f"priors must lie in (0, 1), got {prevalence} and {train_prior}")
    return np.asarray(logits, dtype=np.float64) + (logit(prevalence) - logit(train_prior))


def probability(logits, prevalence: float, train_prior: float = TRAIN_PRIOR) -> np.ndarray:
    """P(positive | image) (n,) float64 among objects whose positive fraction is ``prevalence``."""
    return sigmoid(shift_logits(logits, prevalence, train_prior))


def prevalence_of(config: Mapping, task: str) -> float:
    """The stated prevalence of ``task`` (``evaluate.prevalence[task]``)."""
    table = config["evaluate"]["prevalence"]
    if task not in table:
        raise ConfigError(f"key 'evaluate.prevalence' has no entry for task '{task}'; add "
                          f"evaluate: {{prevalence: {{{task}: 0.001}}}} (fraction of positives)")
    return float(table[task])
