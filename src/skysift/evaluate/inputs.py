"""What the evaluation reads: the gathered catalog's scores, the split, and the labels of the
test objects, joined exactly by catalog index and id (never through a float); and which
objects the models were trained on (:func:`trained_positives`, for known-lens recovery)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.errors import DataError, SurveyError
from skysift.evaluate import completeness
from skysift.ids import id_keys, match_ids
from skysift.io import open_h5, read_table, require_columns
from skysift.score.tables import read_gathered
from skysift.survey.labels import clean_labels

log = logging.getLogger(__name__)

#: Value of the ``split`` column that marks the test split (0 train, 1 val, 2 test).
TEST = 2


def _read_product(path: Path, what: str, columns: Sequence[str]) -> Table:
    if not path.exists():
        raise DataError(f"{path}: {what} not found; run the step that makes it "
                        f"(snakemake {path})")
    try:
        table = Table.read(path, format="fits")
    except Exception as exc:  # astropy raises many types for unreadable files
        raise DataError(f"{path}: cannot read the {what} ({exc}); delete it and re-run its rule") \
            from None
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: {what} lacks columns {missing}; columns are "
                        f"{', '.join(table.colnames)}; delete it and re-run its rule")
    return table


def read_catalog(path: str | Path, score_columns: Mapping[str, str]) -> Table:
    """The scores catalog (a FITS file, or the folder of per-shard parts of
    ``infer.catalog_format``), its ``index``, ``id`` and every model's score column, checked.

    score_columns : {"task/model": column}.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: scores catalog not found; run the step that makes it "
                        f"(snakemake {path})")
    table = read_gathered(path, ["index", "id", *score_columns.values()])
    missing = [c for c in ("index", "id") if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: scores catalog lacks columns {missing}; columns are "
                        f"{', '.join(table.colnames)}; delete it and re-run its rule")
    for label, column in score_columns.items():
        if column not in table.colnames:
            have = [c for c in table.colnames if c.startswith("score_")] or ["none"]
            raise DataError(
                f"{path}: no score column '{column}' for model {label} (score columns: "
                f"{', '.join(have)}); re-run infer and gather with this config "
                "(snakemake --forcerun infer gather), or remove it from tasks/models")
    index = np.asarray(table["index"], dtype=np.int64)
    dups = duplicated(index)
    if dups.size:
        raise DataError(f"{path}: {dups.size} catalog indices occur more than once "
                        f"(e.g. {dups[:5].tolist()}); delete it and re-run gather")
    return table


def split_of(index: np.ndarray, path: str | Path) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of each catalog ``index`` (n,), from split.fits."""
    path = Path(path)
    table = _read_product(path, "split table", ("index", "split"))
    ref = np.asarray(table["index"], dtype=np.int64)
    code = np.asarray(table["split"])
    if duplicated(ref).size or not np.isin(code, (0, 1, 2)).all():
        raise DataError(f"{path}: split table has repeated indices or split values other than "
                        "0/1/2; delete it and re-run split")
    pos = match_ids(index, ref)
    if (pos < 0).any():
        missing = index[pos < 0]
        raise DataError(f"{path}: {missing.size} catalog objects have no split (e.g. index "
                        f"{missing[:5].tolist()}); the split is stale: re-run split and gather")
    return code[pos].astype(np.uint8)


def label_values(column, path: str | Path, key: str) -> np.ndarray:
    """A 0/1 label column as float (n,): 1, 0, NaN where masked or NaN (unlabelled); checked
    as the training-set step checks it (:func:`skysift.survey.labels.clean_labels`)."""
    present, labels = clean_labels(column, f"{path}: label column '{column.name}' ({key})")
    return np.where(present, labels.astype(np.float64), np.nan)


def read_labels(config: Mapping, specs: Sequence[Mapping] = ()
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray | str]]:
    """Label keys (m,), {task: (m,) float 0/1/NaN} and {(task, binning name):
    :func:`skysift.evaluate.completeness.label_column`} from the ``survey.labels`` table."""
    survey = config["survey"]
    if not survey.get("labels"):
        raise SurveyError("evaluation needs labels but survey.labels is null; set survey.labels "
                          "to a table of id plus one 0/1 column per task (tasks[].label)")
    path, id_col = survey["labels"], survey["labels_id_column"]
    table = read_table(path, "labels table")
    require_columns(table, {"labels_id_column": id_col}, path, "survey")
    for i, task in enumerate(config["tasks"]):
        require_columns(table, {"label": task["label"]}, path, f"tasks[{i}]")
    id_mask = np.ma.getmaskarray(table[id_col])
    if id_mask.any():
        log.warning("%s: %d rows without an id ignored", path, int(id_mask.sum()))
        table = table[~id_mask]
    keys = id_keys(table[id_col], f"{path}: column '{id_col}'")
    dups = duplicated(keys)
    if dups.size:
        raise SurveyError(f"{path}: {dups.size} ids occur more than once in column '{id_col}' "
                          f"(e.g. {dups[:5].tolist()}); keep one row per object")
    values = {t["name"]: label_values(table[t["label"]], path, f"tasks[{i}].label")
              for i, t in enumerate(config["tasks"])}
    columns = {(spec["task"], spec["name"]): completeness.label_column(table, spec, path)
               for spec in specs}
    for (task, name), col in columns.items():
        if isinstance(col, str):
            log.warning("task %s: completeness by %s unavailable: %s", task, name, col)
    return keys, values, columns


def trained_positives(trainset_path: str | Path, task: str) -> np.ndarray:
    """Catalog rows (``index``, sorted, unique int64) of the real objects that are positive
    rows of the train or validation split of ``task``'s training set
    (``results/train/{task}.h5``): labelled positives, and hosts a positive was simulated
    into. The models of the task were trained (split 0) or selected (split 1) on them.
    """
    with open_h5(trainset_path, ("index", "label", "split")) as fh:
        if str(fh.attrs.get("task", task)) != task:
            raise DataError(f"{trainset_path}: a training set of task '{fh.attrs['task']}', "
                            f"not of the lens task '{task}' (training_set.lens_task); pass "
                            f"results/train/{task}.h5")
        index = np.asarray(fh["index"][:], np.int64)
        keep = (np.asarray(fh["label"][:]) == 1) & (np.asarray(fh["split"][:]) <= 1)
    return np.unique(index[keep & (index >= 0)])  # index -1: simulated on blank sky


def duplicated(keys: np.ndarray) -> np.ndarray:
    """The distinct values that occur more than once in ``keys`` (n,), sorted."""
    s = np.sort(keys, kind="stable")
    return np.unique(s[1:][s[1:] == s[:-1]])
