"""The sim→real gap: a model's ranking on simulated test rows beside its ranking on the
survey's real labelled test objects.

The train step scores the test split of the task's training set (simulated positives and
hard negatives with real negatives; :mod:`skysift.learn.selection`) and writes it to the
model's metrics JSON (``test``). The evaluate step measures the same model on the real
labelled objects of the catalog's test split; the difference of the two is the gap a
simulation-trained model pays on real data (``sim_to_real_gap`` in ``metrics.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from skysift.errors import DataError

#: Metrics compared between simulated test rows and real labelled test objects.
GAP_METRICS = ("auroc", "tpr0", "tpr10")


def gap(real: Mapping, simulated: Mapping | None) -> dict | None:
    """``simulated[m] - real[m]`` for each of :data:`GAP_METRICS` both define; None without
    simulated rows of both classes."""
    if not simulated or simulated.get("auroc") is None:
        return None
    return {m: simulated[m] - real[m] for m in GAP_METRICS
            if simulated.get(m) is not None and real.get(m) is not None}


def attach_simulated(results: Mapping[str, dict], paths: Sequence[str | Path]) -> list[str]:
    """Add ``simulated_test``, ``selected_on`` and ``sim_to_real_gap`` to the results of each
    model whose metrics JSON is in ``paths``; return one summary phrase per model."""
    lines = []
    for path in paths:
        try:
            trained = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: unreadable model metrics ({exc}); re-run its train "
                            "rule") from None
        res = results.get(trained.get("task"), {}).get(trained.get("model"))
        if res is None:
            continue
        simulated = trained.get("test", {}).get("simulated")
        res.update(simulated_test=simulated, selected_on=trained.get("selected_on"),
                   sim_to_real_gap=gap(res, simulated))
        if res["sim_to_real_gap"] is not None and res.get("auroc") is not None:
            lines.append(f"{trained['task']}/{trained['model']}: AUROC {res['auroc']:.3f} on "
                         f"real labelled test objects, {simulated['auroc']:.3f} on simulated "
                         f"test rows (sim→real gap {res['sim_to_real_gap']['auroc']:+.3f})")
    return lines
