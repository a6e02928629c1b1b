"""Grades of several graders combined per object, and how much the graders agree.

Each grade counts on the scale ``GRADE_VALUE`` (A 3, B 2, C 1, N 0). An object's combined
grade is that of its graders' mean value rounded to the nearest grade, a tie (a mean exactly
between two grades) going to the lower one: two graders who say A and B make a B, so a
split decision never promotes an object. Disagreement is counted per object (graders who
differ; who differ by more than one step, e.g. A and C) and per pair of graders (exact and
within-one-step agreement, Cohen's kappa on the objects both graded).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from itertools import combinations

from skysift.io import atomic_output
from skysift.survey.grades import (  # noqa: F401  (combine, Combined: re-exported)
    GRADE_VALUE,
    GRADES,
    Combined,
    Key,
    combine,
    combined_grade,
)

#: Columns of the per-object table of combined grades (``skysift grades --combined``).
COMBINED_COLUMNS = ("index", "id", "n_graders", "mean", "grade", "spread", "grades")


def kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two graders' grades of the same objects; None when undefined."""
    n = len(a)
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    chance = sum((a.count(g) / n) * (b.count(g) / n) for g in GRADES)
    return None if chance >= 1 else (observed - chance) / (1 - chance)


def agreement(comb: Combined) -> dict:
    """How much the graders agree: counts over objects and one entry per pair of graders."""
    multi = [g for g in comb.grades.values() if len(g) > 1]
    spreads = [max(GRADE_VALUE[x] for x in g.values()) - min(GRADE_VALUE[x] for x in g.values())
               for g in multi]
    pairs = []
    for p, q in combinations(comb.graders, 2):
        both = [(g[p], g[q]) for g in comb.grades.values() if p in g and q in g]
        a, b = [x for x, _ in both], [y for _, y in both]
        steps = [abs(GRADE_VALUE[x] - GRADE_VALUE[y]) for x, y in both]
        pairs.append({"graders": [p, q], "n_common": len(both),
                      "exact": sum(s == 0 for s in steps) / len(both) if both else None,
                      "within_one": sum(s <= 1 for s in steps) / len(both) if both else None,
                      "kappa": kappa(a, b)})
    return {"scale": GRADE_VALUE, "n_graders": len(comb.graders),
            "n_multiply_graded": len(multi),
            "n_disagree": sum(s > 0 for s in spreads),
            "n_disagree_more_than_one_step": sum(s > 1 for s in spreads),
            "pairs": pairs}


def write_combined(path, comb: Combined) -> None:
    """Per-object table ``COMBINED_COLUMNS`` of the graded objects, atomically; ids verbatim."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COMBINED_COLUMNS)
        for key in comb.keys:
            g = comb.grades.get(key)
            if not g:
                continue
            mean, grade = combined_grade(list(g.values()))
            values = [GRADE_VALUE[x] for x in g.values()]
            w.writerow([key[0], key[1], len(g), f"{mean:.4g}", grade,
                        max(values) - min(values), ";".join(f"{k}={v}" for k, v in g.items())])
