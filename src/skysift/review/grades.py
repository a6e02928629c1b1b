"""Read back a graded candidate sheet and report purity by grade (``skysift grades``).

The sheet is ``results/review/{task}_grades.csv`` (rule ``review``) with its ``grade`` column
filled by a person: A (certain lens), B (probable), C (possible), N (not a lens), empty for
a candidate not yet graded. Purity is the fraction of the graded candidates that are
positive, for three definitions of positive: A, A+B and A+B+C, each with a Wilson score
interval at ``evaluate.ci``. Given the original sheet (``--candidates``), every candidate is
matched back by catalog ``index`` and ``id`` exactly (text, never through a float), so a
spreadsheet that rounded an id or dropped a row is caught.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from skysift import cli
from skysift.errors import DataError
from skysift.io import provenance, write_json
from skysift.metrics import wilson_interval
from skysift.survey.grades import GRADES, match_sheet, parse_grades, read_sheet, sheet_keys

log = logging.getLogger(__name__)

#: Positive classes of the purity figures: name -> grades counted as lenses.
POSITIVES = {"A": ("A",), "A+B": ("A", "B"), "A+B+C": ("A", "B", "C")}


def purity(grades: Sequence[str], ci: float) -> dict:
    """Counts per grade and purity for each positive set of ``POSITIVES``.

    grades : one per candidate, in ``GRADES`` or '' (not graded, excluded from purity).
    Returns {"n_rows", "n_graded", "n_ungraded", "counts": {grade: n},
    "purity": {name: {"value", "k", "n", "interval": [lo, hi]}}, "ci"}.
    """
    counts = {g: sum(1 for x in grades if x == g) for g in GRADES}
    n = sum(counts.values())
    out = {"n_rows": len(grades), "n_graded": n, "n_ungraded": len(grades) - n,
           "counts": counts, "ci": ci, "purity": {}}
    for name, positive in POSITIVES.items():
        k = sum(counts[g] for g in positive)
        lo, hi = wilson_interval(k, n, ci)
        out["purity"][name] = {"value": k / n if n else None, "k": k, "n": n,
                               "interval": [lo, hi] if n else None}
    return out


def grade_sheet(config: Mapping, sheet: str | Path, candidates: str | Path | None,
                out: str | Path) -> dict:
    """Read a filled sheet, check it against the candidates, write purity JSON; return it."""
    rows = read_sheet(sheet)
    grades = parse_grades(rows, sheet)
    if candidates is not None:
        match_sheet(rows, read_sheet(candidates), sheet, candidates)
    else:
        sheet_keys(rows, sheet)
    result = purity(grades, config["evaluate"]["ci"])
    if not result["n_graded"]:
        raise DataError(f"{sheet}: no row has a grade; fill the 'grade' column with "
                        f"{', '.join(GRADES)}")
    result.update(sheet=str(sheet), candidates=None if candidates is None else str(candidates),
                  provenance=provenance(config, step="grades"))
    write_json(out, result)
    return result


def parser():
    """The ``skysift grades`` argument parser."""
    p = cli.parser("Purity by grade of a filled candidate grading sheet.")
    p.add_argument("--sheet", required=True, help="the filled sheet (CSV, column grade)")
    p.add_argument("--candidates",
                   help="the sheet as the review rule wrote it (results/review/{task}_grades"
                        ".csv) or the candidate list: every candidate must be matched exactly")
    p.add_argument("--out", required=True, help="purity JSON to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grades CLI; returns the exit code."""
    def body(args) -> int:
        res = grade_sheet(cli.load_config(args), args.sheet, args.candidates, args.out)
        figures = ", ".join(f"{name} {p['value']:.2f} [{p['interval'][0]:.2f}, "
                            f"{p['interval'][1]:.2f}]" for name, p in res["purity"].items())
        log.info("%s: %d of %d candidates graded (%s); purity %s -> %s", args.sheet,
                 res["n_graded"], res["n_rows"],
                 " ".join(f"{g}={n}" for g, n in res["counts"].items()), figures, args.out)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
