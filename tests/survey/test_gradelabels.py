"""Grades become labels (review.grades): A/B positives, N negatives, C unused, the test split
kept out, the labels table winning conflicts, rounds and graders combined, label_source."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.table import Table

from skysift import config as skyconfig
from skysift.errors import ConfigError, DataError
from skysift.survey.gradelabels import combine_rounds, merge_grades, training_labels
from skysift.survey.grades import EXPORT_COLUMNS, SHEET_COLUMNS
from skysift.survey.hashsplit import assign_split
from skysift.survey.labels import LabelIndex, find_task

BIG = 2**53  # ids beyond float64's exact integers: joined exactly, never through a float
SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}


def ids_by_split(n: int) -> dict[int, list[int]]:
    """``n`` ids above 2**53 of each split (0 train, 1 val, 2 test) under the default salt."""
    cand = np.int64(BIG) + np.arange(400, dtype=np.int64)
    split = assign_split(cand, SPLIT, "skysift-v1")
    return {s: cand[split == s][:n].tolist() for s in (0, 1, 2)}


IDS = ids_by_split(6)


def sheet(path, graded):
    """A filled sheet: ``graded`` = [(id, grade)]; index = position."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SHEET_COLUMNS)
        for k, (oid, grade) in enumerate(graded):
            w.writerow([k + 1, k, oid, 0, 0, 1.0, grade])
    return str(path)


def export(path, grader, graded, task="lens"):
    """A review page export by ``grader``: [(id, grade)]."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EXPORT_COLUMNS)
        for k, (oid, grade) in enumerate(graded):
            w.writerow([k + 1, k, oid, grade, grader, "", "2026-01-31T12:00:00Z", task, "r"])
    return str(path)


def cfg(grades, labels=None, tasks=("lens",)):
    return skyconfig.load(None, json.dumps({
        "survey": {"kind": "files", "labels": labels, "labels_id_column": "objid"},
        "tasks": [{"name": t, "label": f"is_{t}"} for t in tasks],
        "review": {"grades": grades}}))


def test_a_b_become_positives_n_negatives_c_unused_with_their_source(tmp_path):
    train = IDS[0]
    f = sheet(tmp_path / "r1.csv", [(train[0], "A"), (train[1], "B"), (train[2], "C"),
                                    (train[3], "N"), (train[4], "")])
    config = cfg([{"file": f}])
    labels = training_labels(config, *find_task(config, "lens"))
    found, label = labels.lookup(np.array(train[:5], np.int64))
    assert found.tolist() == [True, True, False, True, False]   # C and ungraded: no label
    assert label[[0, 1, 3]].tolist() == [1, 1, 0]
    assert labels.origin_of(np.array(train[:2], np.int64)).tolist() == [f"grades:{f}"] * 2
    assert labels.keys.dtype == np.int64  # ids of the text file joined as the integers they are
    assert labels.info["by_grade"] == {"A": 1, "B": 1, "C": 1, "N": 1}
    assert labels.info["n_unused_c"] == 1
    assert (labels.info["n_added_positive"], labels.info["n_added_negative"]) == (2, 1)


def test_grades_of_the_test_split_never_become_labels_and_are_counted(tmp_path):
    test, val = IDS[2], IDS[1]
    f = sheet(tmp_path / "r1.csv", [(test[0], "A"), (test[1], "N"), (test[2], "C"),
                                    (val[0], "A")])
    config = cfg([{"file": f, "task": "lens"}])
    labels = training_labels(config, *find_task(config, "lens"))
    found, _ = labels.lookup(np.array([test[0], test[1], val[0]], np.int64))
    assert found.tolist() == [False, False, True]
    assert labels.info["n_test"] == 2 and labels.info["n_test_positive"] == 1


def test_the_labels_table_wins_conflicts_and_they_are_counted(tmp_path):
    train = IDS[0]
    Table({"objid": np.array(train[:3], np.int64), "is_lens": [0, 1, 0]}).write(
        tmp_path / "labels.fits")
    f = sheet(tmp_path / "r1.csv", [(train[0], "A"), (train[1], "A"), (train[2], "A"),
                                    (train[3], "A")])
    config = cfg([{"file": f}], labels=str(tmp_path / "labels.fits"))
    labels = training_labels(config, *find_task(config, "lens"))
    found, label = labels.lookup(np.array(train[:4], np.int64))
    assert found.all() and label.tolist() == [0, 1, 0, 1]      # the table's 0s stand
    assert labels.origin_of(np.array(train[:4], np.int64)).tolist() == [
        "labels", "labels", "labels", f"grades:{f}"]
    assert labels.info["n_in_table"] == 3 and labels.info["n_conflicts"] == 2
    assert labels.info["n_added_positive"] == 1


def test_graders_of_a_round_by_mean_a_later_round_replaces(tmp_path):
    a, b = IDS[0][0], IDS[0][1]
    ann = export(tmp_path / "ann.csv", "ann", [(a, "A"), (b, "A")])
    bob = export(tmp_path / "bob.csv", "bob", [(a, "N"), (b, "B")])
    ann2 = export(tmp_path / "ann2.csv", "ann", [(a, "B")])
    config = cfg([{"file": ann}, {"file": bob}, {"file": ann2, "round": 2}])
    got = {int(k[1]): v for k, v in combine_rounds(config, "lens").items()}
    assert got[b] == ("B", f"grades:{ann}+{bob}", 1)   # A and B: mean 2.5, ties down to B
    assert got[a] == ("B", f"grades:{ann2}", 2)         # round 1 said C (A, N); round 2 says B
    config["review"]["grades"].pop()
    assert combine_rounds(config, "lens")[("0", str(a))][0] == "C"   # C: not a label


def test_which_task_a_file_grades(tmp_path):
    f = sheet(tmp_path / "s.csv", [(IDS[0][0], "A")])
    with pytest.raises(ConfigError, match=r"review.grades\[0\].task"):
        training_labels(*_two_tasks(f, None))
    labels = training_labels(*_two_tasks(f, "lens"))
    assert labels.info["n_added_positive"] == 1
    e = export(tmp_path / "e.csv", "ann", [(IDS[0][0], "A")], task="merger")
    with pytest.raises(DataError, match="grade task"):
        training_labels(*_two_tasks(e, "lens"))
    config, pos, task = _two_tasks(e, None)  # the export says merger: nothing for lens
    assert training_labels(config, pos, task).info["n_graded"] == 0


def _two_tasks(path, task):
    config = cfg([{"file": path, "task": task}], tasks=("lens", "merger"))
    return (config, *find_task(config, "lens"))


def test_string_ids_stay_text():
    names = np.array([f"s{k:03d}" for k in range(40)])
    s1, s2, s3 = names[assign_split(names, SPLIT, "skysift-v1") != 2][:3]  # none in test
    table = LabelIndex(np.array(["x", s2]), np.array([1, 0], np.uint8))
    merged = merge_grades(table, {("0", s1): ("N", "grades:s.csv", 1),
                                  ("1", s2): ("A", "grades:s.csv", 1)}, SPLIT, "skysift-v1")
    assert merged.keys.dtype.kind == "U"
    found, label = merged.lookup(np.array([s1, s2, "x", s3]))
    assert found.tolist() == [True, True, True, False] and label[:3].tolist() == [0, 0, 1]
    assert merged.info["n_conflicts"] == 1
