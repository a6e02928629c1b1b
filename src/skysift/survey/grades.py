"""Grading sheets as input: the grades people gave to candidates, read back and checked.

A sheet (``results/review/{task}_grades.csv``, docs/formats.md) holds one row per candidate
with its catalog ``index`` and ``id`` (text, verbatim) and a ``grade``: A (certain), B
(probable), C (possible), N (not), empty when not graded. Reading one is input handling, as
the labels table is (:mod:`skysift.survey.labels`): the review step writes sheets and
reports purity from them (:mod:`skysift.review.grades`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

from skysift.errors import DataError

#: Columns of the grading sheet, in order (docs/formats.md).
SHEET_COLUMNS = ("rank", "index", "id", "ra", "dec", "score", "grade")
#: Grades a reviewer may give: lens sure (A), probable (B), possible (C), not a lens (N).
GRADES = ("A", "B", "C", "N")


def read_sheet(path: str | Path) -> list[dict[str, str]]:
    """Rows of a grading sheet as text (ids verbatim); DataError when a column is missing."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: grading sheet not found; the review rule writes "
                        "results/review/{task}_grades.csv")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's BOM
        reader = csv.DictReader(fh)
        rows = list(reader)
        names = reader.fieldnames or []
    missing = [c for c in ("index", "id", "grade") if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing (found {names}); keep the columns "
                        "of the sheet the review rule wrote and fill only 'grade'")
    return rows


def parse_grades(rows: Sequence[Mapping[str, str]], path: str | Path) -> list[str]:
    """The grade of every row, upper-cased; '' for ungraded. DataError naming bad rows.

    Row numbers count the header as line 1, as a spreadsheet shows them.
    """
    grades, bad = [], []
    for line, row in enumerate(rows, start=2):
        grade = (row.get("grade") or "").strip().upper()
        if grade and grade not in GRADES:
            bad.append(f"line {line} (rank {row.get('rank', '?')}, id {row.get('id')}): "
                       f"{row.get('grade')!r}")
        grades.append(grade)
    if bad:
        raise DataError(f"{path}: {len(bad)} invalid grades: {'; '.join(bad[:5])}"
                        + (" ..." if len(bad) > 5 else "")
                        + f"; allowed are {', '.join(GRADES)} (A certain, B probable, "
                        "C possible, N not a lens) or empty for not graded")
    return grades


def sheet_keys(rows: Sequence[Mapping[str, str]], path: str | Path) -> list[tuple[str, str]]:
    """The (index, id) text of every row; DataError when a candidate appears twice."""
    keys = [((r.get("index") or "").strip(), r.get("id") or "") for r in rows]
    seen: dict[tuple[str, str], int] = {}
    for line, key in enumerate(keys, start=2):
        if key in seen:
            raise DataError(f"{path}: line {line} repeats index {key[0]}, id {key[1]} of line "
                            f"{seen[key]}; keep one row per candidate")
        seen[key] = line
    return keys


def match_sheet(rows: Sequence[Mapping[str, str]], reference: Sequence[Mapping[str, str]],
                path: str | Path, ref_path: str | Path) -> None:
    """Check that the graded rows are exactly the reference's candidates (index and id).

    Raises DataError naming the first row of either side without its exact match.
    """
    got, want = sheet_keys(rows, path), sheet_keys(reference, ref_path)
    want_set, got_set = set(want), set(got)
    for line, key in enumerate(got, start=2):
        if key not in want_set:
            raise DataError(f"{path}: line {line} (index {key[0]}, id {key[1]}) is not a "
                            f"candidate of {ref_path}; was the id changed (a spreadsheet "
                            "rounding a long integer)? Keep the index and id columns as text")
    for line, key in enumerate(want, start=2):
        if key not in got_set:
            raise DataError(f"{path}: candidate index {key[0]}, id {key[1]} (line {line} of "
                            f"{ref_path}) is missing; keep every row, leave grade empty if "
                            "not graded")
