"""How a task's training set mixes real labels and simulations (``training_set.use``).

Real labels lead. With ``use: auto`` (the default) a task whose labels table holds enough
labelled positives and negatives trains on the labels alone; one with few labels (a search
that starts from a few dozen known lenses, positives only) adds simulations in the survey's
own cutouts, which then carry the training; a survey without labels is simulated.
Grades of earlier review rounds (``review.grades``) count as labels. The
choice is made once per task, when its training set is built, and recorded in its attrs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

import numpy as np

from skysift.survey.gradelabels import READ, training_labels
from skysift.survey.labels import find_task

log = logging.getLogger(__name__)


def simulator_of(config: Mapping, task_name: str) -> str | None:
    """``lens`` or ``merger`` when ``task_name`` is the configured lens or merger task."""
    tcfg = config["training_set"]
    return {tcfg["lens_task"]: "lens", tcfg["merger_task"]: "merger"}.get(task_name)


def choose_use(tcfg: Mapping, has_simulator: bool, n_pos: int | None, n_neg: int | None
               ) -> tuple[str, str]:
    """The effective ``use`` of one task and why.

    tcfg : the ``training_set`` block; ``use`` other than ``auto`` is kept as it is.
    has_simulator : whether skysift can simulate the task's positives.
    n_pos, n_neg : labelled positives and negatives of the task; None without labels.
    """
    if not has_simulator:
        return "labels", "no simulator for this task"
    if tcfg["use"] != "auto":
        return tcfg["use"], "training_set.use"
    if n_pos is None:
        return "simulated", "no labels table"
    if n_pos >= tcfg["auto_min_positives"] and n_neg >= tcfg["auto_min_negatives"]:
        return "labels", (f"{n_pos} labelled positives >= {tcfg['auto_min_positives']} and "
                          f"{n_neg} negatives >= {tcfg['auto_min_negatives']}")
    return "both", (f"scarce labels ({n_pos} positives, {n_neg} negatives; labels alone from "
                    f"{tcfg['auto_min_positives']}/{tcfg['auto_min_negatives']}): simulations "
                    "added")


def resolve_use(config: Mapping, task_name: str, labels=READ) -> dict:
    """A copy of ``config`` whose ``training_set.use`` is the task's effective mix (also
    ``training_set.use_requested``, what the config asked for); logs the choice. ``labels``:
    the task's :func:`training_labels` when the caller has read them."""
    pos, task = find_task(config, task_name)
    tcfg = config["training_set"]
    n_pos = n_neg = None
    index = None
    if tcfg["use"] == "auto":
        index = training_labels(config, pos, task) if labels is READ else labels
    if index is not None:  # survey.labels with the grades of review.grades
        n_pos, n_neg = int(np.sum(index.labels == 1)), int(np.sum(index.labels == 0))
    use, why = choose_use(tcfg, simulator_of(config, task_name) is not None, n_pos, n_neg)
    resolved = copy.deepcopy(dict(config))
    resolved["training_set"]["use"] = use
    resolved["training_set"]["use_requested"] = tcfg["use"]
    if tcfg["use"] == "auto":
        log.info("training_set %s: use auto -> %s (%s)", task_name, use, why)
    return resolved
