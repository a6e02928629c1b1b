"""The training-set file (``results/train/{task}.h5``, docs/formats.md): its datasets, row
origins and attrs, shared by the labelled set (:mod:`skysift.sim.trainset`) and the
simulated one (:mod:`skysift.sim.trainsim`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from skysift.errors import DataError
from skysift.survey.hashsplit import assign_split

log = logging.getLogger(__name__)

STAMP_DATASETS = ("images", "mask", "flags", "index", "id")
SPLIT_NAMES = ("train", "val", "test")
#: Where a row comes from (dataset ``origin``): a real object used as a negative without a
#: label, a labelled object, a simulated positive, a simulated hard negative.
ORIGINS = ("real", "labelled", "simulated", "hard_negative")
REAL, LABELLED, SIMULATED, HARD = range(4)
#: Stamps attrs that must agree across tiles (a model sees one kind of input).
_MUST_MATCH = ("bands", "stamp_size_pix", "normalisation")
#: Per-file provenance, replaced by this step's.
_PROVENANCE = ("skysift_version", "git_commit", "config_hash", "seed", "h5_layout_version",
               "step", "inputs")


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


class ChunkAppender:
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


def counts_by_split(label: np.ndarray, split: np.ndarray) -> dict:
    """{split name: {neg, pos}} counts of rows with ``label`` (n,) and ``split`` (n,)."""
    return {name: {"neg": int(((split == code) & (label == 0)).sum()),
                   "pos": int(((split == code) & (label == 1)).sum())}
            for code, name in enumerate(SPLIT_NAMES)}


def read_rows(ds: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``ds[rows]`` for any rows (repeats allowed), reading each distinct row once."""
    uniq, inverse = np.unique(rows, return_inverse=True)
    return ds[uniq.tolist()][inverse] if uniq.size else ds[0:0]


def blank_ids(ids: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Ids with blank-sky rows set to -1 (integer ids) or b"" (string ids)."""
    return np.where(blank, -1 if ids.dtype.kind in "iu" else b"", ids).astype(ids.dtype)


def blank_splits(survey, config: Mapping) -> np.ndarray:
    """Split (train 0, val 1, test 2) of each blank-sky stamp: ``split`` hash of its name
    ``blank/{tile}/{x}/{y}``, so one stamp of sky never serves two splits."""
    b = survey.blank
    if not len(b.get("tile", ())):
        return np.zeros(0, np.uint8)
    names = [f"blank/{t}/{x:.0f}/{y:.0f}" for t, (x, y) in zip(b["tile"], b["pos_xy"],
                                                                strict=True)]
    return assign_split(names, config["split"]["fractions"], config["split"]["salt"])
