"""Grades of earlier review rounds as training labels (config ``review.grades``).

Each entry of ``review.grades`` names a grades file (a review page export or a filled
sheet, :mod:`skysift.survey.grades`), the task it grades (``task``; null: the file's
``task`` column, or the only task of the config) and its ``round``. For one task:

- within a round, the graders of an object are combined as ``skysift grades`` combines
  them (:func:`skysift.survey.grades.combined_grade`: mean on A 3 ... N 0, rounded, ties to
  the lower grade); a later round's combined grade of an object replaces an earlier one;
- A and B become positives (1), N real negatives (0); C (possible) is not used: counted;
- objects whose id hashes into the test split (``split.salt``, ``split.fractions``, the
  split step's rule) never become labels: counted and logged, so evaluation stays clean;
- an object the user's labels table (``survey.labels``) already labels keeps the table's
  label: the table wins, and disagreements are counted (``n_conflicts``);
- every label says where it comes from (``labels`` or ``grades:<file>[+<file>...]``, the
  files of the deciding round), the training set's ``label_source`` column.

How labelled rows are weighted and selected stays with the training set
(``training_set.use``): grades only add labelled objects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np

from skysift.errors import ConfigError, DataError
from skysift.survey.grades import combine, combined_grade, read_grades_file
from skysift.survey.hashsplit import assign_split
from skysift.survey.labels import GRADES_SOURCE_PREFIX, LabelIndex, load_labels

log = logging.getLogger(__name__)

#: Training label of each combined grade; C (possible) is not used.
GRADE_LABEL = {"A": 1, "B": 1, "N": 0}
#: Split code of the test split (skysift.survey.hashsplit.SPLIT_NAMES).
TEST = 2
_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def task_entries(config: Mapping, task: str) -> list[dict]:
    """The ``review.grades`` entries that may grade ``task``: those naming it and those
    naming no task (their file says which task each row grades)."""
    return [dict(e) for e in config["review"]["grades"] if e["task"] in (None, task)]


def _rows_of_task(config: Mapping, entry: Mapping, pos: int, task: str):
    """(graded file restricted to ``task``'s rows) of one entry; DataError/ConfigError when
    the file and the entry disagree or no task can be told."""
    f = read_grades_file(entry["file"])
    tasks = [(r.get("task") or "").strip() for r in f.rows]
    where = f"review.grades[{pos}] ({entry['file']})"
    if entry["task"] is not None:
        other = sorted({t for t in tasks if t and t != entry["task"]})
        if other:
            raise DataError(f"{where}: rows grade task(s) {other} but the entry says task "
                            f"'{entry['task']}'; fix review.grades[{pos}].task or export the "
                            "file again from the page of that task")
        return f
    names = [t["name"] for t in config["tasks"]]
    if any(not t for t in tasks) and len(names) > 1:
        raise ConfigError(f"{where}: the file does not say which task it grades (no task "
                          f"column) and the config has tasks {names}; set "
                          f"review.grades[{pos}].task")
    keep = [t in ("", task) for t in tasks]
    f.rows = [r for r, k in zip(f.rows, keep, strict=True) if k]
    f.lines = [x for x, k in zip(f.lines, keep, strict=True) if k]
    f.grades = [x for x, k in zip(f.grades, keep, strict=True) if k]
    f.graders = [x for x, k in zip(f.graders, keep, strict=True) if k]
    return f


def round_grades(config: Mapping, task: str
                 ) -> dict[int, dict[tuple[str, str], tuple[str, str]]]:
    """{round: {(index, id) text: (combined grade, its files)}} of ``task``, rounds in order:
    the graders of one round combined by mean (:func:`combined_grade`); ``files`` is
    ``grades:<file>[+<file>...]``, the files that graded the object in that round."""
    by_round: dict[int, list] = {}
    for pos, entry in enumerate(config["review"]["grades"]):
        if entry["task"] in (None, task):
            by_round.setdefault(int(entry["round"]), []).append(
                (entry["file"], _rows_of_task(config, entry, pos, task)))
    out: dict[int, dict[tuple[str, str], tuple[str, str]]] = {}
    for rnd in sorted(by_round):
        files = by_round[rnd]
        comb = combine([f for _, f in files])
        graded = [(str(path), {(r["index"].strip(), r["id"])
                               for r, g in zip(f.rows, f.grades, strict=True) if g})
                  for path, f in files]
        out[rnd] = {key: (combined_grade(list(graders.values()))[1],
                          GRADES_SOURCE_PREFIX + "+".join(path for path, keys in graded
                                                          if key in keys))
                    for key, graders in comb.grades.items()}
    return out


def combine_rounds(config: Mapping, task: str) -> dict[tuple[str, str], tuple[str, str, int]]:
    """{(index, id) text: (combined grade, files of its deciding round, round)} of ``task``:
    the latest round that graded an object decides its grade (:func:`round_grades`)."""
    out: dict[tuple[str, str], tuple[str, str, int]] = {}
    for rnd, grades in round_grades(config, task).items():
        out.update({key: (grade, files, rnd) for key, (grade, files) in grades.items()})
    return out


def id_keys_like(texts: Sequence[str], integer: bool) -> np.ndarray:
    """Grade ids (text, verbatim) as join keys: int64 when ``integer`` (the labels' ids are
    integers, or there is no table) and every text is a canonical decimal integer, text
    otherwise (as the catalog step keeps ids with leading zeros)."""
    texts = np.asarray(list(texts), dtype=str)
    if integer and all(_INT.fullmatch(t) and -2**63 <= int(t) < 2**63 for t in texts):
        return texts.astype(np.int64) if texts.size else np.zeros(0, np.int64)
    return texts


def merge_grades(table: LabelIndex | None, graded: Mapping[tuple[str, str], tuple[str, str, int]],
                 fractions: Mapping[str, float], salt: str) -> LabelIndex:
    """The labels of ``table`` plus the ``graded`` objects (:func:`combine_rounds`).

    Returns a :class:`LabelIndex` whose ``origins`` say where each label comes from and
    whose ``info`` counts what happened to the grades: ``n_graded``, ``by_grade``,
    ``n_unused_c``, ``n_test`` (in the test split, left out), ``n_in_table`` (the table
    labels them already; ``n_conflicts`` of them with another label: the table wins),
    ``n_added_positive`` and ``n_added_negative``.
    """
    keys = list(graded)
    grades = np.array([graded[k][0] for k in keys], dtype="U1")
    origins = np.array([graded[k][1] for k in keys], dtype=str)
    integer = table is None or table.keys.dtype.kind == "i"
    ids = id_keys_like([k[1] for k in keys], integer)
    split = assign_split(np.array([k[1] for k in keys], dtype=str), fractions, salt) \
        if keys else np.zeros(0, np.uint8)
    usable = np.isin(grades, list(GRADE_LABEL))
    label = np.array([GRADE_LABEL.get(g, 0) for g in grades], np.uint8)
    test = usable & (split == TEST)
    in_table = np.zeros(len(keys), bool)
    table_label = np.zeros(len(keys), np.uint8)
    if table is not None and len(keys):
        in_table, table_label = table.lookup(ids, "grades ids")
    add = usable & ~test & ~in_table
    info = {"n_graded": len(keys),
            "by_grade": {g: int((grades == g).sum()) for g in ("A", "B", "C", "N")},
            "n_unused_c": int((grades == "C").sum()), "n_test": int(test.sum()),
            "n_test_positive": int((test & (label == 1)).sum()),
            "n_in_table": int((usable & ~test & in_table).sum()),
            "n_conflicts": int((usable & ~test & in_table & (table_label != label)).sum()),
            "n_added_positive": int((add & (label == 1)).sum()),
            "n_added_negative": int((add & (label == 0)).sum())}
    if table is None:
        merged = LabelIndex(ids[add], label[add], "review.grades", origins[add])
    else:
        both_int = ids.dtype.kind == "i" and table.keys.dtype.kind == "i"
        t_ids, g_ids = ((table.keys, ids[add]) if both_int else  # text: widest of both kept
                        (table.keys.astype(str), ids[add].astype(str)))
        merged = LabelIndex(np.concatenate([t_ids, g_ids]),
                            np.concatenate([table.labels, label[add]]), table.source,
                            np.concatenate([table.origins, origins[add]]))
    merged.info = info
    return merged


#: Default of the ``labels`` arguments that take an already read :func:`training_labels`:
#: read them (a training-set job reads its labels and grades once and passes them on).
READ = object()


def training_labels(config: Mapping, task_pos: int, task: Mapping) -> LabelIndex | None:
    """The labels a task's training set reads: ``survey.labels`` merged with the grades of
    ``review.grades`` (:func:`merge_grades`); None when there are neither."""
    table = load_labels(config, task_pos, task) if config["survey"]["labels"] else None
    if not task_entries(config, task["name"]):
        return table
    merged = merge_grades(table, combine_rounds(config, task["name"]),
                          config["split"]["fractions"], config["split"]["salt"])
    i = merged.info
    log.info("grades of task %s: %d objects graded (A %d, B %d, C %d, N %d); %d C not used; "
             "%d in the test split left out (%d positives); %d already in the labels table "
             "(%d conflicts, the table wins); added %d positives and %d negatives",
             task["name"], i["n_graded"], *i["by_grade"].values(), i["n_unused_c"],
             i["n_test"], i["n_test_positive"], i["n_in_table"], i["n_conflicts"],
             i["n_added_positive"], i["n_added_negative"])
    return merged
