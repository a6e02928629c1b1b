"""Grades read back: review page exports (one per grader) and hand-filled sheets, combined per
object, the graders' agreement, and one clear error per malformed file."""

from __future__ import annotations

import csv
import json

import pytest
from test_review import BIG, candidates_file

from skysift.errors import DataError
from skysift.review import gallery as review
from skysift.review import grades
from skysift.review.combine import agreement, combine, combined_grade, kappa
from skysift.survey.grades import EXPORT_COLUMNS, SHEET_COLUMNS, read_grades_file

N = 6


@pytest.fixture
def sheet(tmp_path):
    """The sheet the review rule writes for six candidates (ids above 2**53)."""
    cands = candidates_file(tmp_path / "c.csv", [(i, BIG + i, "a", 6.0 - i) for i in range(N)])
    review.write_sheet(tmp_path / "sheet.csv", review.read_candidates(cands, "score_lens_cnn"))
    return tmp_path / "sheet.csv"


def export(path, grader, graded, comment=None, stamp="2026-01-31T12:00:00.000Z"):
    """A file as the page's export button writes it: one row per graded object."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(EXPORT_COLUMNS)
        for i, grade in graded.items():
            w.writerow([i + 1, i, BIG + i, grade, grader, (comment or {}).get(i, ""), stamp,
                        "lens", "abc123"])
    return path


def run(tmp_path, *files, sheet=None, combined=None):
    argv = ["--grades", *map(str, files), "--out", str(tmp_path / "purity.json")]
    argv += ["--candidates", str(sheet)] if sheet else []
    argv += ["--combined", str(combined)] if combined else []
    return grades.main(argv)


def test_combined_grade_is_the_rounded_mean_ties_going_down():
    assert combined_grade(["A"]) == (3.0, "A")
    assert combined_grade(["A", "B"]) == (2.5, "B")   # a split decision never promotes
    assert combined_grade(["A", "A", "B"]) == (pytest.approx(8 / 3), "A")
    assert combined_grade(["A", "N"]) == (1.5, "C")
    assert combined_grade(["C", "N"]) == (0.5, "N")
    assert combined_grade(["B", "C", "C"]) == (pytest.approx(4 / 3), "C")


def test_kappa_by_hand():
    # 4 objects, agree on 3: p_o = 0.75; p_e = (2/4)(1/4) + (1/4)(2/4) + (1/4)(1/4) = 5/16
    assert kappa(["A", "A", "B", "N"], ["A", "B", "B", "N"]) == pytest.approx(
        (0.75 - 5 / 16) / (1 - 5 / 16))
    assert kappa([], []) is None and kappa(["A"], ["A"]) is None  # chance agreement 1


def test_three_graders_and_a_sheet_combined_with_their_disagreement(sheet, tmp_path):
    a = export(tmp_path / "a.csv", "ann", {0: "A", 1: "B", 2: "C", 3: "N"},
               comment={0: 'arc, "bright"\nsecond line'})
    b = export(tmp_path / "b.csv", "bob", {0: "A", 1: "A", 2: "N", 4: "B"})
    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row, grade in zip(rows, ["B", "", "", "N", "", "N"], strict=True):
        row["grade"] = grade
    filled = tmp_path / "cy.csv"  # a third grader by hand: the file's name is the grader
    with open(filled, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SHEET_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    assert run(tmp_path, a, b, filled, sheet=sheet, combined=tmp_path / "comb.csv") == 0
    res = json.loads((tmp_path / "purity.json").read_text())
    # object: grades -> mean -> combined: 0 A A B 2.67 A; 1 B A 2.5 B; 2 C N 0.5 N;
    # 3 N N 0 N; 4 B 2 B; 5 N 0 N
    assert res["counts"] == {"A": 1, "B": 2, "C": 0, "N": 3}
    assert (res["n_rows"], res["n_graded"], res["n_ungraded"]) == (N, 6, 0)
    assert res["purity"]["A+B"]["value"] == pytest.approx(3 / 6)
    assert res["graders"] == {"ann": 4, "bob": 4, "cy.csv": 3}
    agree = res["agreement"]
    assert agree["n_multiply_graded"] == 4  # objects 0-3
    assert agree["n_disagree"] == 3  # 0 (A A B), 1 (B A), 2 (C N)
    assert agree["n_disagree_more_than_one_step"] == 0
    ann_bob = agree["pairs"][0]
    assert ann_bob["graders"] == ["ann", "bob"] and ann_bob["n_common"] == 3
    assert ann_bob["exact"] == pytest.approx(1 / 3) and ann_bob["within_one"] == 1.0
    with open(tmp_path / "comb.csv", newline="") as fh:
        comb = list(csv.DictReader(fh))
    assert [(r["id"], r["grade"], r["n_graders"]) for r in comb[:2]] == [
        (str(BIG), "A", "3"), (str(BIG + 1), "B", "2")]
    assert comb[0]["grades"] == "ann=A;bob=A;cy.csv=B"


def test_graders_more_than_one_step_apart_are_counted(tmp_path):
    files = [read_grades_file(export(tmp_path / "a.csv", "ann", {0: "A", 1: "B", 2: "N"})),
             read_grades_file(export(tmp_path / "b.csv", "bob", {0: "C", 1: "B", 2: "A"}))]
    agree = agreement(combine(files))
    assert agree["n_disagree"] == 2 and agree["n_disagree_more_than_one_step"] == 2
    assert agree["pairs"][0]["within_one"] == pytest.approx(1 / 3)


def test_one_export_reproduces_the_sheets_purity(sheet, tmp_path):
    a = export(tmp_path / "a.csv", "ann", {0: "A", 1: "N", 2: "B"})
    assert run(tmp_path, a, sheet=sheet) == 0
    res = json.loads((tmp_path / "purity.json").read_text())
    assert res["counts"] == {"A": 1, "B": 1, "C": 0, "N": 1}
    assert (res["n_rows"], res["n_graded"]) == (N, 3)  # the other candidates: not graded
    assert res["agreement"]["pairs"] == []


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[2].__setitem__(3, "maybe"), "a.csv: 1 invalid grades: line 3 (rank 2"),
    (lambda r: r[1].__setitem__(6, "yesterday"), "a.csv: line 2 (id {}): timestamp 'yesterday'"),
    (lambda r: r[3].__setitem__(2, ""), "a.csv: line 4 has no id or index"),
    (lambda r: r.append(list(r[1])), "a.csv: line 5 repeats index 0"),
    (lambda r: r[1].__setitem__(2, f"{float(BIG):.14E}"), "a.csv: line 2 (index 0, id 4.6"),
    (lambda r: [x.pop(2) for x in r], "a.csv: columns ['id'] missing"),
])
def test_invalid_export_names_the_file_and_row(sheet, tmp_path, capsys, edit, message):
    path = export(tmp_path / "a.csv", "ann", {0: "A", 1: "B", 2: "C"})
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert run(tmp_path, path, sheet=sheet) == 2
    err = capsys.readouterr().err
    assert message.format(BIG) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1  # one clear message
    assert not (tmp_path / "purity.json").exists()


def test_the_same_grader_twice_or_another_runs_export_is_refused(sheet, tmp_path, capsys):
    a = export(tmp_path / "a.csv", "ann", {0: "A"})
    a2 = export(tmp_path / "a2.csv", "ann", {0: "B"})
    assert run(tmp_path, a, a2, sheet=sheet) == 2
    assert "a2.csv: line 2: grader 'ann' already graded index 0" in capsys.readouterr().err
    with pytest.raises(DataError, match="not found"):
        read_grades_file(tmp_path / "missing.csv")
    other = export(tmp_path / "o.csv", "ann", {N + 3: "A"})  # not a candidate of this run
    assert run(tmp_path, other, sheet=sheet) == 2
    assert f"o.csv: line 2 (index {N + 3}, id {BIG + N + 3}) is not a candidate" in \
        capsys.readouterr().err
    empty = export(tmp_path / "e.csv", "ann", {})
    assert run(tmp_path, empty, sheet=sheet) == 2
    assert "no row has a grade" in capsys.readouterr().err
