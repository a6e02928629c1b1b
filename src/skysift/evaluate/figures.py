"""Figures of the evaluation: ROC curves of every model side by side (the completeness, purity and
reliability figures live beside their metrics)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from skysift.io import atomic_output

#: Smallest false-positive rate of the log-scaled second ROC panel.
MIN_LOG_FPR = 1e-4


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path) -> None:
    """Write a PNG of ROC curves atomically: linear axes, then FPR on a log axis.

    curves : {label: (fpr (k,), tpr (k,), auroc)}, one per task/model; a curve with NaN
    AUROC is listed in the legend as undefined and not drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, log_x in zip(axes, (False, True), strict=True):
        for label, (fpr, tpr, auc) in curves.items():
            if math.isnan(auc):
                ax.plot([], [], label=f"{label}: undefined (test split lacks a class)")
            else:
                ax.step(fpr, tpr, where="post", lw=1.5, label=f"{label} (AUROC {auc:.3f})")
        grid = np.geomspace(MIN_LOG_FPR, 1, 50) if log_x else np.array([0.0, 1.0])
        ax.plot(grid, grid, ls="--", lw=0.8, color="grey", label="chance")
        if log_x:
            ax.set_xscale("log")
            ax.set_xlim(MIN_LOG_FPR, 1)
        else:
            ax.set_xlim(-0.01, 1)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0].set_title("ROC, test split")
    axes[1].set_title("low false-positive rates (log)")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)

