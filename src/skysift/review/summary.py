"""The review page's summary: how each model of a task ranks the real labelled test objects,
beside its simulated test rows and the sim→real gap (from ``results/metrics.json``)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from skysift.errors import DataError


def _fmt(value, ci=None) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def metrics_table(task_models: Mapping[str, Mapping]) -> str:
    """HTML table of each model's ranking of the real labelled test objects beside its
    simulated test rows and the sim→real gap (``results/metrics.json``, ``models.{task}``);
    empty without models."""
    e = html.escape
    rows = []
    for name, m in task_models.items():
        sim, gap = m.get("simulated_test") or {}, m.get("sim_to_real_gap") or {}
        cells = [e(name) + (" (primary)" if m.get("primary") else ""),
                 f"{m.get('n_pos', 0)} / {m.get('n_neg', 0)}",
                 _fmt(m.get("auroc"), m.get("auroc_ci")), _fmt(m.get("tpr0"), m.get("tpr0_ci")),
                 _fmt(m.get("tpr10"), m.get("tpr10_ci")), _fmt(sim.get("auroc")),
                 "–" if gap.get("auroc") is None else f"{gap['auroc']:+.3f}"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = ("model", "test objects (+ / −)", "AUROC", "TPR0", "TPR10", "AUROC on simulated "
            "test rows", "sim→real gap (AUROC)")
    return ('<table id="metrics"><caption>How each model ranks the real labelled test objects '
            "(95 % bootstrap intervals; results/metrics.json)</caption>\n<thead><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead>\n<tbody>"
            + "\n".join(rows) + "</tbody></table>\n")


def task_metrics(path: str | Path | None, task: str) -> dict:
    """``models.{task}`` of a metrics JSON; {} when ``path`` is None."""
    if path is None:
        return {}
    try:
        return json.loads(Path(path).read_text()).get("models", {}).get(task, {})
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable metrics ({exc}); re-run the evaluate rule") from None
