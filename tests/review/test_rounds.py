"""Review rounds compared (skysift rounds): new lenses per 100 images inspected, an object
graded in an earlier round never counted again, and the recall of the graded positives."""

from __future__ import annotations

import csv
import json

import pytest

from skysift.errors import DataError
from skysift.review.rounds import (
    compare_rounds,
    graded_positives,
    main,
    read_ranking,
    recall_top_k,
)
from skysift.survey.grades import SHEET_COLUMNS


def k(i: int) -> tuple[str, str]:
    return (str(i), str(2**53 + i))


def test_new_per_100_counts_each_object_once():
    r1 = {k(0): "A", k(1): "N", k(2): "N", k(3): "B"}          # 2 lenses in 4
    r2 = {k(0): "A", k(3): "N", k(4): "A", k(5): "C", k(6): "N"}  # k0, k3 graded before
    out = compare_rounds({1: r1, 2: r2})
    assert [r["n_inspected"] for r in out] == [4, 3]
    assert [r["n_regraded"] for r in out] == [0, 2]
    assert [r["n_new_positive"] for r in out] == [2, 1]            # k0 again is not new
    assert out[0]["new_per_100"] == pytest.approx(50.0)
    assert out[1]["new_per_100"] == pytest.approx(100 / 3)
    assert out[1]["new_by_grade"] == {"A": 1, "B": 0, "C": 1, "N": 1}
    assert compare_rounds({1: {k(0): "A"}, 2: {k(0): "A"}})[1]["new_per_100"] is None


def test_recall_of_the_graded_positives_in_the_top_k():
    positives = graded_positives({1: {k(0): "A", k(1): "B", k(2): "A"}, 2: {k(2): "N"}})
    assert positives == {k(0), k(1)}                               # the latest grade counts
    got = recall_top_k([k(5), k(1), k(7), k(0)], positives, 3)
    assert (got["n_in_top_k"], got["recall"]) == (1, 0.5)


def _sheet(path, graded):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SHEET_COLUMNS)
        for rank, (i, grade) in enumerate(graded, start=1):
            w.writerow([rank, *k(i), 0, 0, 1.0, grade])
    return str(path)


def test_cli_reads_rounds_and_candidate_lists(tmp_path):
    r1 = _sheet(tmp_path / "r1.csv", [(0, "A"), (1, "N")])
    r2 = _sheet(tmp_path / "r2.csv", [(1, "N"), (2, "B"), (3, "N"), (4, "N")])
    cands = _sheet(tmp_path / "cands.csv", [(2, ""), (9, ""), (0, "")])
    out = tmp_path / "rounds.json"
    argv = ["--set", "survey.kind=files", "--set", "tasks=[{name: lens, label: is_lens}]",
            "--round", r1, "--round", r2, "--candidates", cands, "--top-k", "2",
            "--out", str(out)]
    assert main(argv) == 0
    rep = json.loads(out.read_text())
    assert [r["new_per_100"] for r in rep["rounds"]] == [50.0, pytest.approx(100 / 3)]
    assert rep["runs"][0]["n_in_top_k"] == 1 and rep["n_graded_positives"] == 2
    assert main(argv[:4] + ["--out", str(tmp_path / "none.json")]) == 2   # no grades: an error
    with pytest.raises(DataError, match="candidate list not found"):
        read_ranking(tmp_path / "missing.csv")
