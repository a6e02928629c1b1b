"""Labelled training set of one task: stamps of every tile joined with labels and split.

Labels come from ``survey.labels`` (id column ``survey.labels_id_column``, 0/1 column
``tasks[].label``) and are joined onto the stamps' ``id`` exactly (int64 when both sides
are integers, strings otherwise: never through a float); the split comes from
``results/split.fits`` by ``index``. Objects without a label are counted and left out.
The stamps are streamed into ``results/train/{task}.h5`` (docs/formats.md) one chunk at a
time; only the per-object columns of the labelled set are held in memory.

    python -m skysift.trainset --config-json J --task NAME --stamps results/stamps/*.h5 \
        --split results/split.fits --out results/train/NAME.h5
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from skysift import cli
from skysift.errors import ConfigError, DataError, SurveyError
from skysift.io import (
    atomic_output,
    open_h5,
    provenance,
    read_attr_json,
    read_table,
    require_columns,
    write_attrs,
)

log = logging.getLogger(__name__)

STAMP_DATASETS = ("images", "mask", "flags", "index", "id")
SPLIT_NAMES = ("train", "val", "test")
#: Stamps attrs that must agree across tiles (a model sees one kind of input).
_MUST_MATCH = ("bands", "stamp_size_pix", "normalisation")
#: Per-file provenance, replaced by this step's.
_PROVENANCE = ("skysift_version", "git_commit", "config_hash", "seed", "h5_layout_version",
               "step", "inputs")


def find_task(config: Mapping, name: str) -> tuple[int, dict]:
    """Position and entry of the task called ``name`` in ``config["tasks"]``."""
    for i, task in enumerate(config["tasks"]):
        if task["name"] == name:
            return i, task
    names = [t["name"] for t in config["tasks"]]
    raise ConfigError(f"--task {name!r} is not a configured task; tasks are {names} "
                      "(config key tasks[].name)")


def _keys(ids: np.ndarray, as_str: bool) -> np.ndarray:
    """Join keys: int64, or str (integers as decimal strings, bytes decoded as UTF-8)."""
    ids = np.asarray(ids)
    if not as_str:
        return ids.astype(np.int64)
    if ids.dtype.kind == "S":
        return np.char.decode(ids, "utf-8")
    if ids.dtype.kind == "O":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in ids],
                        dtype=str)
    return ids.astype(str)  # exact for integers: no float on the way


class LabelIndex:
    """Labels sorted by id for exact lookups; remembers which labels found a stamp.

    Parameters
    ----------
    ids : (m,) label-table ids, integers or strings/bytes.
    labels : (m,) uint8 labels in {0, 1}.
    """

    def __init__(self, ids: np.ndarray, labels: np.ndarray):
        self.ids = np.asarray(ids)
        self.labels = np.asarray(labels, dtype=np.uint8)
        self._sorted: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
        self.matched: np.ndarray | None = None

    def _index(self, as_str: bool) -> tuple[np.ndarray, np.ndarray]:
        if as_str not in self._sorted:
            keys = _keys(self.ids, as_str)
            order = np.argsort(keys, kind="stable")
            keys, labels = keys[order], self.labels[order]
            dup = keys[1:] == keys[:-1]
            conflict = dup & (labels[1:] != labels[:-1])
            if conflict.any():
                raise SurveyError(f"labels table: ids {keys[1:][conflict][:5].tolist()} appear "
                                  "more than once with different labels; keep one row per id")
            if dup.any():
                log.info("labels table: %d repeated rows with the same id and label counted "
                         "once", int(dup.sum()))
            keep = np.concatenate([[True], ~dup])
            self._sorted[as_str] = (keys[keep], labels[keep])
            self.matched = np.zeros(int(keep.sum()), dtype=bool)
        return self._sorted[as_str]

    def lookup(self, stamp_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels of ``stamp_ids``: (found (n,) bool, label (n,) uint8, 0 where not found)."""
        stamp_ids = np.asarray(stamp_ids)
        as_str = not (stamp_ids.dtype.kind in "iu" and self.ids.dtype.kind in "iu")
        mixed = (stamp_ids.dtype.kind in "iu") != (self.ids.dtype.kind in "iu")
        if mixed and not self._sorted:
            log.warning("stamp ids are %s but label ids are %s: joining on their decimal/UTF-8 "
                        "text", stamp_ids.dtype, self.ids.dtype)
        keys, labels = self._index(as_str)
        query = _keys(stamp_ids, as_str)
        if keys.size == 0 or query.size == 0:
            return np.zeros(query.shape, bool), np.zeros(query.shape, np.uint8)
        pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        found = keys[pos] == query
        self.matched[pos[found]] = True
        return found, np.where(found, labels[pos], 0).astype(np.uint8)


def join_labels(stamp_ids: np.ndarray, label_ids: np.ndarray,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact join of labels onto stamp ids: (found (n,) bool, label (n,) uint8)."""
    return LabelIndex(label_ids, labels).lookup(stamp_ids)


def clean_labels(column, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a label column: returns (present (m,) bool, labels (m,) uint8).

    Masked entries and NaN count as missing (the object is unlabelled for this task);
    every other value must be 0 or 1 (``where`` names the file/column/key in errors).
    """
    values = np.asarray(np.ma.getdata(column))
    present = ~np.ma.getmaskarray(column)
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    elif values.dtype.kind == "f":
        present &= ~np.isnan(values)
    elif values.dtype.kind not in "iu":
        raise SurveyError(f"{where} holds {values.dtype} values; labels must be 0 or 1")
    bad = present & ~np.isin(values, (0, 1))
    if bad.any():
        shown = sorted(set(values[bad].tolist()))[:5]
        raise SurveyError(f"{where} must hold only 0 or 1 (empty or NaN for unknown); "
                          f"{int(bad.sum())} rows hold other values, e.g. {shown}")
    return present, np.where(present, values, 0).astype(np.uint8)


def load_labels(config: Mapping, task_pos: int, task: Mapping) -> LabelIndex:
    """Read ``survey.labels`` and return the task's labels indexed by id."""
    survey = config["survey"]
    path = survey["labels"]
    if not path:
        raise SurveyError(f"task '{task['name']}' needs labels for training but survey.labels "
                          "is null; set survey.labels to a FITS/CSV/ECSV table with the id "
                          "column survey.labels_id_column and a 0/1 column per task "
                          f"(here '{task['label']}', tasks[{task_pos}].label)")
    table = read_table(path, "labels table")
    id_column = survey["labels_id_column"]
    require_columns(table, {"labels_id_column": id_column}, path, "survey")
    require_columns(table, {"label": task["label"]}, path, f"tasks[{task_pos}]")
    ids = table[id_column]
    if np.ma.getmaskarray(ids).any() or np.asarray(ids).dtype.kind == "f":
        raise SurveyError(f"{path}: id column '{id_column}' (survey.labels_id_column) must "
                          "hold an integer or string id in every row (no blanks, no floats)")
    present, labels = clean_labels(
        table[task["label"]], f"{path}: column '{task['label']}' (tasks[{task_pos}].label)")
    if (~present).any():
        log.info("%s: %d rows have no '%s' label (left out)", path, int((~present).sum()),
                 task["label"])
    return LabelIndex(np.asarray(ids)[present], labels[present])


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


def _plain(value):
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def merge_attrs(attrs: Sequence[Mapping], paths: Sequence[str | Path]) -> dict:
    """Stamps attrs common to all files; differing numbers are replaced by their median.

    ``bands``, ``stamp_size_pix`` and ``normalisation`` must agree (DataError otherwise);
    the per-file ``tile`` becomes the list ``tiles``; provenance is dropped.
    """
    keys = sorted(set().union(*attrs) - set(_PROVENANCE) - {"tile"})
    merged: dict = {}
    for key in keys:
        values = [_plain(a.get(key)) for a in attrs]
        texts = {json.dumps(v, sort_keys=True, default=str) for v in values}
        if len(texts) == 1:
            merged[key] = values[0]
        elif key in _MUST_MATCH:
            shown = dict(zip(map(str, paths), values, strict=True))
            raise DataError(f"stamps files disagree on '{key}': {shown}; make every tile "
                            "with the same config and re-run preprocess")
        else:
            try:
                merged[key] = np.median(np.asarray(values, dtype=np.float64), axis=0).tolist()
                log.info("attr '%s' differs between tiles; recording the median", key)
            except (TypeError, ValueError):
                log.info("attr '%s' differs between tiles; not recorded", key)
    merged["tiles"] = [str(_plain(a.get("tile", Path(p).stem)))
                       for a, p in zip(attrs, paths, strict=True)]
    return merged


@dataclass
class _Selected:
    """The labelled rows of one stamps file."""

    path: str
    n: int
    rows: np.ndarray  # (k,) row numbers in the file
    columns: dict  # flags, index, id, label of those rows


def _scan(paths: Sequence[str], labels: LabelIndex) -> tuple[list[_Selected], list[dict], tuple]:
    """First pass: per-object columns only; which rows are labelled."""
    selected, attrs, shape = [], [], None
    for path in paths:
        with open_h5(path, required=STAMP_DATASETS) as fh:
            attrs.append({k: read_attr_json(fh, k) for k in fh.attrs})
            if shape is None:
                shape = fh["images"].shape[1:]
            elif fh["images"].shape[1:] != shape:
                raise DataError(f"{path}: images have shape {fh['images'].shape[1:]} per object, "
                                f"{paths[0]} has {shape}; re-run cutouts with one config")
            ids = fh["id"][()]
            first = selected[0].columns["id"].dtype if selected else ids.dtype
            if (ids.dtype.kind in "iu") != (first.kind in "iu"):
                raise DataError(f"{path}: ids are {ids.dtype}, {paths[0]} has {first}; "
                                "re-run cutouts with one catalog")
            found, label = labels.lookup(ids)
            rows = np.flatnonzero(found)
            columns = {"flags": fh["flags"][()][rows], "index": fh["index"][()][rows],
                       "id": ids[rows], "label": label[rows]}
            selected.append(_Selected(str(path), len(ids), rows, columns))
    return selected, attrs, shape


class _ChunkAppender:
    """Append rows to pre-sized datasets in whole chunks (no partial-chunk rewrites)."""

    def __init__(self, datasets: Mapping[str, h5py.Dataset], rows: int):
        self.datasets, self.rows, self.pos, self.n_pending = datasets, rows, 0, 0
        self.pending: dict[str, list] = {name: [] for name in datasets}

    def append(self, arrays: Mapping[str, np.ndarray]) -> None:
        for name, arr in arrays.items():
            self.pending[name].append(arr)
        self.n_pending += len(next(iter(arrays.values())))
        while self.n_pending >= self.rows:
            self._flush(self.rows)

    def close(self) -> None:
        if self.n_pending:
            self._flush(self.n_pending)

    def _flush(self, take: int) -> None:
        for name, parts in self.pending.items():
            block = np.concatenate(parts)
            self.datasets[name][self.pos:self.pos + take] = block[:take]
            self.pending[name] = [block[take:]]
        self.pos += take
        self.n_pending -= take


def _counts(label: np.ndarray, split: np.ndarray) -> dict:
    return {name: {"neg": int(((split == code) & (label == 0)).sum()),
                   "pos": int(((split == code) & (label == 1)).sum())}
            for code, name in enumerate(SPLIT_NAMES)}


def build_trainset(stamp_paths: Sequence[str | Path], split_path: str | Path,
                   out_path: str | Path, config: Mapping, task_name: str) -> dict:
    """Write ``results/train/{task}.h5`` from stamps, labels and split; return a summary.

    Returns
    -------
    dict with ``n_labelled``, ``n_unlabelled`` (stamps without a label),
    ``n_labels_without_stamp`` and ``counts`` ({split: {neg, pos}}).
    """
    task_pos, task = find_task(config, task_name)
    labels = load_labels(config, task_pos, task)
    split_index, split_codes = load_split(split_path)
    paths = [str(p) for p in stamp_paths]
    selected, attrs, shape = _scan(paths, labels)
    cols = {k: np.concatenate([s.columns[k] for s in selected]) for k in selected[0].columns}
    cols["split"] = lookup_split(cols["index"], split_index, split_codes, split_path)
    uniq, n_seen = np.unique(cols["index"], return_counts=True)
    if (n_seen > 1).any():
        raise DataError(f"catalog rows {uniq[n_seen > 1][:5].tolist()} appear in several stamps "
                        "files; pass each tile's stamps once")
    counts = _counts(cols["label"], cols["split"])
    if counts["train"]["pos"] == 0 or counts["train"]["neg"] == 0:
        raise SurveyError(
            f"task '{task_name}': the train split has {counts['train']['pos']} positives and "
            f"{counts['train']['neg']} negatives among {cols['label'].size} labelled objects "
            f"with stamps; training needs both: add labelled objects to "
            f"{config['survey']['labels']} (column '{task['label']}') or check that "
            "survey.labels_id_column holds the catalog ids")
    n_total = int(sum(s.n for s in selected))
    n_labelled = int(cols["label"].size)
    chunk = int(config["preprocess"]["chunk_objects"])
    header = merge_attrs(attrs, paths)
    header.update(task=task_name, label_column=task["label"], counts=counts,
                  n_labelled=n_labelled, n_unlabelled=n_total - n_labelled,
                  **{f"n_{s}_{c}": counts[s][c] for s in SPLIT_NAMES for c in ("neg", "pos")})
    header.update(provenance(config, step="training_set", task=task_name, inputs=paths,
                             split=str(split_path), labels=str(config["survey"]["labels"])))
    kw = dict(chunks=(min(chunk, n_labelled),) + tuple(shape), compression="gzip",
              compression_opts=1, shuffle=True)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as fout:
        appender = _ChunkAppender(
            {"images": fout.create_dataset("images", (n_labelled,) + shape, np.float32, **kw),
             "mask": fout.create_dataset("mask", (n_labelled,) + shape, np.uint8, **kw)}, chunk)
        for sel in selected:
            if sel.rows.size == 0:
                continue
            with open_h5(sel.path, required=STAMP_DATASETS) as fh:
                for start in range(0, sel.n, chunk):
                    rows = sel.rows[(sel.rows >= start) & (sel.rows < start + chunk)] - start
                    if rows.size:
                        appender.append({name: fh[name][start:start + chunk][rows]
                                         for name in ("images", "mask")})
        appender.close()
        for name in ("flags", "index", "id", "label", "split"):
            fout.create_dataset(name, data=cols[name])
        write_attrs(fout, header)
    return {"n_labelled": n_labelled, "n_unlabelled": n_total - n_labelled, "counts": counts,
            "n_labels_without_stamp": int((~labels.matched).sum())
            if labels.matched is not None else 0}


def parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``python -m skysift.trainset``."""
    p = cli.parser("Join labels and split onto the stamps of every tile for one task.")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--stamps", required=True, nargs="+", help="stamps HDF5 files of all tiles")
    p.add_argument("--split", required=True, help="split table (results/split.fits)")
    p.add_argument("--out", required=True, help="training set HDF5 file to write")
    return p


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.load_config(args)
    summary = build_trainset(args.stamps, args.split, args.out, config, args.task)
    if summary["n_labels_without_stamp"]:
        log.info("%d labelled ids have no stamp (not in the catalog, off the footprint or "
                 "rejected)", summary["n_labels_without_stamp"])
    seconds = time.perf_counter() - t0
    c = summary["counts"]
    log.info("training_set %s: %d labelled objects from %d files (train %d+/%d-, val %d+/%d-, "
             "test %d+/%d-), %d stamps without a label left out, in %.2f s (%.0f objects/s)",
             args.task, summary["n_labelled"], len(args.stamps),
             *(c[s][k] for s in SPLIT_NAMES for k in ("pos", "neg")), summary["n_unlabelled"],
             seconds, (summary["n_labelled"] + summary["n_unlabelled"]) / max(seconds, 1e-9))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m skysift.trainset``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
