"""Grades files as input: the grades people gave to candidates, read back and checked.

Two kinds, told apart by their header:

- a sheet (``results/review/{task}_grades.csv``, docs/formats.md) holds one row per
  candidate with its catalog ``index`` and ``id`` (text, verbatim) and a ``grade``: A
  (certain), B (probable), C (possible), N (not), empty when not graded, filled by hand;
- an export of the review page (``EXPORT_COLUMNS``, docs/review.md) holds one row per object
  a grader graded or commented, with the ``grader``'s name, a ``comment`` and an ISO 8601
  ``timestamp``.

Reading them is input handling, as the labels table is (:mod:`skysift.survey.labels`): the
review step writes sheets and pages and reports purity from their grades
(:mod:`skysift.review.grades`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from skysift.errors import DataError

#: Columns of the grading sheet, in order (docs/formats.md).
SHEET_COLUMNS = ("rank", "index", "id", "ra", "dec", "score", "grade")
#: Grades a reviewer may give: lens sure (A), probable (B), possible (C), not a lens (N).
GRADES = ("A", "B", "C", "N")
#: Columns of a grades file exported by the review page, in order (docs/review.md).
EXPORT_COLUMNS = ("rank", "index", "id", "grade", "grader", "comment", "timestamp", "task",
                  "run")


@dataclass
class GradesFile:
    """One grades file read back: its rows as text, each row's grade and grader."""

    path: Path
    kind: str                  # "sheet" (filled by hand) or "export" (the review page)
    rows: list[dict[str, str]]
    lines: list[int]           # (row,) line of each row in the file (the header is line 1)
    grades: list[str]          # (row,) in GRADES or '' (not graded)
    graders: list[str]         # (row,) the grader's name; the file's name when none is given


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


def parse_grades(rows: Sequence[Mapping[str, str]], path: str | Path,
                 lines: Sequence[int] | None = None) -> list[str]:
    """The grade of every row, upper-cased; '' for ungraded. DataError naming bad rows.

    lines : the line of each row in the file; by default row k is on line k + 2 (the header
    is line 1, as a spreadsheet shows them).
    """
    grades, bad = [], []
    for line, row in zip(lines or range(2, len(rows) + 2), rows, strict=True):
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


def sheet_keys(rows: Sequence[Mapping[str, str]], path: str | Path,
               lines: Sequence[int] | None = None) -> list[tuple[str, str]]:
    """The (index, id) text of every row; DataError when a candidate appears twice."""
    keys = [((r.get("index") or "").strip(), r.get("id") or "") for r in rows]
    seen: dict[tuple[str, str], int] = {}
    for line, key in zip(lines or range(2, len(keys) + 2), keys, strict=True):
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


def read_grades_file(path: str | Path) -> GradesFile:
    """Read a sheet or a review page export (told apart by a ``grader`` column), checked.

    Raises DataError naming the file and line of a malformed row: a grade not in ``GRADES``,
    an empty id or index, a timestamp that is not ISO 8601, an object given twice.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: grades file not found; export it from the review page "
                        "(results/review/{task}.html, button 'export grades') or fill "
                        "results/review/{task}_grades.csv")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's BOM
        reader = csv.DictReader(fh)
        rows, lines = [], []
        for row in reader:
            rows.append(row)
            lines.append(reader.line_num)
        names = reader.fieldnames or []
    kind = "export" if "grader" in names else "sheet"
    missing = [c for c in ("index", "id", "grade") if c not in names]
    if missing:
        how = ("export the file again from the review page" if kind == "export" else
               "keep the columns of the sheet the review rule wrote and fill only 'grade'")
        raise DataError(f"{path}: columns {missing} missing (found {names}); {how}")
    for line, row in zip(lines, rows, strict=True):
        if not (row.get("id") or "") or not (row.get("index") or "").strip():
            raise DataError(f"{path}: line {line} has no id or index; keep both columns of "
                            "every row as written")
        stamp = (row.get("timestamp") or "").strip()
        if kind == "export" and stamp:
            try:
                datetime.fromisoformat(stamp)
            except ValueError:
                raise DataError(f"{path}: line {line} (id {row['id']}): timestamp {stamp!r} "
                                "is not ISO 8601 (e.g. 2026-01-31T12:00:00Z)") from None
    grades = parse_grades(rows, path, lines)
    graders = [(r.get("grader") or "").strip() or path.name for r in rows]
    seen: dict[tuple[str, str, str], int] = {}
    for line, who, row in zip(lines, graders, rows, strict=True):
        key = (who, row["index"].strip(), row["id"])
        if key in seen:
            raise DataError(f"{path}: line {line} repeats index {key[1]}, id {key[2]} of line "
                            f"{seen[key]} (grader {who}); keep one row per object and grader")
        seen[key] = line
    return GradesFile(path, kind, rows, lines, grades, graders)


#: Numeric value of each grade (docs/review.md).
GRADE_VALUE = {"A": 3, "B": 2, "C": 1, "N": 0}

Key = tuple[str, str]  # (catalog index, id) as text


@dataclass
class Combined:
    """Every object's grades by grader, in first-seen order, and the graders' names."""

    graders: list[str]
    grades: dict[Key, dict[str, str]] = field(default_factory=dict)  # key -> {grader: grade}
    keys: list[Key] = field(default_factory=list)  # every object seen, graded or not


def combine(files: Sequence[GradesFile]) -> Combined:
    """Gather the grades of ``files`` per object and grader.

    Raises DataError when one grader graded one object in two files (two exports of the
    same person: pass the latest only).
    """
    out = Combined(graders=[])
    where: dict[tuple[str, Key], str] = {}
    seen: set[Key] = set()
    for f in files:
        for row, line, grade, who in zip(f.rows, f.lines, f.grades, f.graders, strict=True):
            key = (row["index"].strip(), row["id"])
            if key not in seen:
                seen.add(key)
                out.keys.append(key)
            if not grade:
                continue
            if (who, key) in where:
                raise DataError(f"{f.path}: line {line}: grader {who!r} already graded index "
                                f"{key[0]}, id {key[1]} in {where[who, key]}; pass each "
                                "grader's latest export only")
            where[who, key] = f"{f.path} line {line}"
            if who not in out.graders:
                out.graders.append(who)
            out.grades.setdefault(key, {})[who] = grade
    return out


def combined_grade(grades: Sequence[str]) -> tuple[float, str]:
    """(mean value, combined grade) of one object's grades: the graders' mean on
    ``GRADE_VALUE`` rounded to the nearest grade, a tie going to the lower one (A and B make
    a B: a split decision never promotes an object)."""
    mean = sum(GRADE_VALUE[g] for g in grades) / len(grades)
    for g in GRADES:  # A, B, C: nearest, ties to the lower grade
        if mean > GRADE_VALUE[g] - 0.5:
            return mean, g
    return mean, "N"
