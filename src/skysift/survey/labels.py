"""Labels of a task: the user's 0/1 table joined exactly onto object ids, and the split.

Labels come from ``survey.labels`` (id column ``survey.labels_id_column``, 0/1 column
``tasks[].label``) and are joined onto stamp ids exactly (int64 when both sides are
integers, strings otherwise: never through a float); the split comes from
``results/split.fits`` by ``index``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from skysift.errors import ConfigError, DataError, SurveyError
from skysift.ids import find_sorted, id_keys, match_ids, mixed
from skysift.io import read_table, require_columns

log = logging.getLogger(__name__)

#: ``label_source`` of a label from the user's table (survey.labels); grades merged into the
#: labels (review.grades, :mod:`skysift.survey.gradelabels`) are ``grades:<file>``.
LABEL_SOURCE_TABLE = "labels"
#: Prefix of the ``label_source`` of a label that comes from review grades.
GRADES_SOURCE_PREFIX = "grades:"


def find_task(config: Mapping, name: str) -> tuple[int, dict]:
    """Position and entry of the task called ``name`` in ``config["tasks"]``."""
    for i, task in enumerate(config["tasks"]):
        if task["name"] == name:
            return i, task
    names = [t["name"] for t in config["tasks"]]
    raise ConfigError(f"--task {name!r} is not a configured task; tasks are {names} "
                      "(config key tasks[].name)")


class LabelIndex:
    """Labels sorted by id for exact lookups; remembers which labels found a stamp.

    Ids are joined as :func:`skysift.ids.id_keys` makes them: int64 when both sides are
    integers, text otherwise (bytes decoded as UTF-8, integers as decimal strings).

    Parameters
    ----------
    ids : (m,) label-table ids, integers or strings/bytes.
    labels : (m,) uint8 labels in {0, 1}.
    source : what holds ``ids``, named in errors.

    Raises
    ------
    SurveyError
        Ids that are not integers or text (:func:`skysift.ids.id_keys`).
    """

    def __init__(self, ids: np.ndarray, labels: np.ndarray, source: str = "labels table",
                 origins: np.ndarray | None = None):
        self.ids = np.asarray(ids)
        self.labels = np.asarray(labels, dtype=np.uint8)
        self.source = source
        self.keys = id_keys(self.ids, source)
        # where each label comes from (LABEL_SOURCE_TABLE, or grades:<file>: skysift.survey.
        # gradelabels); info: what merging grades counted
        self.origins = (np.full(self.labels.size, LABEL_SOURCE_TABLE) if origins is None
                        else np.asarray(origins, dtype=str))
        self.info: dict = {}
        self._sorted: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
        self._origins: dict[bool, np.ndarray] = {}
        self.matched: np.ndarray | None = None

    def _index(self, as_str: bool) -> tuple[np.ndarray, np.ndarray]:
        if as_str not in self._sorted:
            keys = self.keys.astype(str) if as_str else self.keys
            order = np.argsort(keys, kind="stable")
            keys, labels, origins = keys[order], self.labels[order], self.origins[order]
            dup = keys[1:] == keys[:-1]
            conflict = dup & (labels[1:] != labels[:-1])
            if conflict.any():
                raise SurveyError(f"{self.source}: ids {keys[1:][conflict][:5].tolist()} appear "
                                  "more than once with different labels; keep one row per id")
            if dup.any():
                log.info("%s: %d repeated rows with the same id and label counted once",
                         self.source, int(dup.sum()))
            keep = np.concatenate([[True], ~dup])
            self._sorted[as_str] = (keys[keep], labels[keep])
            self._origins[as_str] = origins[keep]
            self.matched = np.zeros(int(keep.sum()), dtype=bool)
        return self._sorted[as_str]

    def _find(self, stamp_ids: np.ndarray, source: str) -> tuple[np.ndarray, bool]:
        """Position (n,) of each of ``stamp_ids`` among the sorted labels (-1: none)."""
        query = id_keys(stamp_ids, source)
        if mixed(query, self.keys) and not self._sorted:
            log.warning("stamp ids are %s but label ids are %s: joining on their decimal/UTF-8 "
                        "text", np.asarray(stamp_ids).dtype, self.ids.dtype)
        as_str = query.dtype.kind != "i" or self.keys.dtype.kind != "i"
        keys, _ = self._index(as_str)
        return find_sorted(keys, query.astype(str) if as_str else query), as_str

    def lookup(self, stamp_ids: np.ndarray,
               source: str = "stamp ids") -> tuple[np.ndarray, np.ndarray]:
        """Labels of ``stamp_ids`` (n,): (found (n,) bool, label (n,) uint8, 0 where not found).

        ``source`` names what holds ``stamp_ids`` in errors.
        """
        pos, as_str = self._find(stamp_ids, source)
        found = pos >= 0
        self.matched[pos[found]] = True
        labels = self._sorted[as_str][1]
        return found, np.where(found, labels[np.maximum(pos, 0)], 0).astype(np.uint8)

    def origin_of(self, stamp_ids: np.ndarray, source: str = "stamp ids") -> np.ndarray:
        """Where the label of each of ``stamp_ids`` (n,) comes from: ``origins`` of its label
        row (``labels``, ``grades:<file>``), '' where the object has no label."""
        pos, as_str = self._find(stamp_ids, source)
        origins = self._origins[as_str]
        if not origins.size:
            return np.full(pos.shape, "", dtype="U1")
        return np.where(pos >= 0, origins[np.maximum(pos, 0)], "")


def join_labels(stamp_ids: np.ndarray, label_ids: np.ndarray,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact join of labels onto stamp ids: (found (n,) bool, label (n,) uint8)."""
    return LabelIndex(label_ids, labels).lookup(stamp_ids)


def clean_labels(column, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a label column: returns (present (m,) bool, labels (m,) uint8).

    Masked entries and NaN count as missing (the object is unlabelled for this task);
    every other value must be 0 or 1 (``where`` names the file/column/key in errors).

    Raises
    ------
    SurveyError
        Values other than 0, 1, empty or NaN (e.g. -1, 2, text): the message gives the bad
        values, how many rows hold them, the allowed values and the fix.
    """
    values = np.asarray(np.ma.getdata(column))
    present = ~np.ma.getmaskarray(column)
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    elif values.dtype.kind == "f":
        present &= ~np.isnan(values)
    elif values.dtype.kind not in "iu":  # text (a CSV column with a word in it), objects
        text = values.astype(str)
        bad = present & ~np.isin(text, ("0", "1"))
        bad = bad if bad.any() else present
        shown = sorted(set(text[bad].tolist()))[:5]
        raise SurveyError(f"{where} holds text, not the numbers 0 or 1: {int(bad.sum())} rows "
                          f"hold values such as {shown}; labels must be 0 or 1 (empty or NaN "
                          "for unknown): write the column as integers 0/1")
    bad = present & ~np.isin(values, (0, 1))
    if bad.any():
        shown = sorted(set(values[bad].tolist()))[:5]
        raise SurveyError(f"{where} must hold only 0 or 1 (empty or NaN for unknown); "
                          f"{int(bad.sum())} rows hold other values, e.g. {shown}: set them to "
                          "0, 1 or empty, or point the task's label at its 0/1 column")
    return present, np.where(present, values, 0).astype(np.uint8)


def unmatched_label_ids(label_ids: np.ndarray, catalog_ids: np.ndarray) -> np.ndarray:
    """Label-table ids (verbatim, in table order) that are not catalog ids; exact join."""
    label_ids, catalog_ids = np.asarray(label_ids), np.asarray(catalog_ids)
    return label_ids[match_ids(id_keys(label_ids, "labels table ids"),
                               id_keys(catalog_ids, "catalog ids")) < 0]


def report_unmatched(config: Mapping, label_ids: np.ndarray, catalog_ids: np.ndarray,
                     path: str | Path) -> int:
    """Count the label ids of ``path`` that are not in the catalog; log them (a warning with
    examples), or raise when ``config["strict"]``. Returns the count.

    Raises
    ------
    SurveyError
        With ``strict``, when any label id is not a catalog id.
    """
    missing = unmatched_label_ids(label_ids, catalog_ids)
    if not missing.size:
        return 0
    shown = [v.decode("utf-8") if isinstance(v, bytes) else v for v in missing[:5].tolist()]
    what = (f"{path}: {missing.size} of {np.asarray(label_ids).size} label ids are not in the "
            f"catalog {config['survey']['catalog']} (e.g. {shown})")
    if config["strict"]:
        raise SurveyError(f"{what}; fix survey.labels_id_column / survey.columns.id or drop "
                          "those rows, or set strict: false to leave them out")
    log.warning("%s; they are left out (strict: true makes this an error)", what)
    return int(missing.size)


def load_labels(config: Mapping, task_pos: int, task: Mapping,
                catalog_ids: np.ndarray | None = None) -> LabelIndex:
    """Read ``survey.labels`` and return the task's labels indexed by id.

    With ``catalog_ids`` (the catalog's ids, :func:`skysift.survey.catalog.read_catalog`), label
    ids not in the catalog are counted and logged, or are an error with ``strict``
    (:func:`report_unmatched`).
    """
    survey = config["survey"]
    path = survey["labels"]
    if not path:
        raise SurveyError(f"task '{task['name']}' needs labels for training but survey.labels "
                          "is null; set survey.labels to a FITS/CSV/ECSV/Parquet table with "
                          "the id column survey.labels_id_column and a 0/1 column per task "
                          f"(here '{task['label']}', tasks[{task_pos}].label)")
    table = read_table(path, "labels table")
    id_column = survey["labels_id_column"]
    require_columns(table, {"labels_id_column": id_column}, path, "survey")
    require_columns(table, {"label": task["label"]}, path, f"tasks[{task_pos}]")
    ids = table[id_column]
    if np.ma.getmaskarray(ids).any() or np.asarray(ids).dtype.kind == "f":
        raise SurveyError(f"{path}: id column '{id_column}' (survey.labels_id_column) must "
                          "hold an integer or string id in every row (no blanks, no floats)")
    if catalog_ids is not None:
        report_unmatched(config, np.asarray(ids), catalog_ids, path)
    present, labels = clean_labels(
        table[task["label"]], f"{path}: column '{task['label']}' (tasks[{task_pos}].label)")
    if (~present).any():
        log.info("%s: %d rows have no '%s' label (left out)", path, int((~present).sum()),
                 task["label"])
    return LabelIndex(np.asarray(ids)[present], labels[present],
                      f"{path}: column '{id_column}' (survey.labels_id_column)")


def load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``index`` (sorted) and ``split`` of ``results/split.fits``."""
    table = read_table(path, "split table")
    missing = [c for c in ("index", "split") if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: no columns {missing}; delete it and re-run the split rule")
    index = np.asarray(table["index"], dtype=np.int64)
    order = np.argsort(index, kind="stable")
    return index[order], np.asarray(table["split"], dtype=np.uint8)[order]


def lookup_split(index: np.ndarray, split_index: np.ndarray, split: np.ndarray,
                 path: str | Path) -> np.ndarray:
    """Split code of each catalog ``index``; DataError for an index the split lacks."""
    if split_index.size == 0:
        found = np.zeros(index.shape, bool)
        pos = np.zeros(index.shape, np.int64)
    else:
        pos = np.minimum(np.searchsorted(split_index, index), split_index.size - 1)
        found = split_index[pos] == index
    if not found.all():
        raise DataError(f"{path}: catalog rows {index[~found][:5].tolist()} have no split; "
                        "the split is older than the catalog: re-run the split rule")
    return split[pos]
