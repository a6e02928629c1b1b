"""The test rows of the scores catalog, read part by part and block by block, so that
evaluate never holds the whole catalog (:func:`read_test_rows`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.errors import DataError
from skysift.evaluate.inputs import TEST
from skysift.ids import find_sorted, id_keys, mixed
from skysift.score.tables import catalog_parts

log = logging.getLogger(__name__)


#: Catalog rows read at once by :func:`read_test_rows` (bounds its memory beside the test rows).
BLOCK_ROWS = 262_144


@dataclass
class TestRows:
    """What evaluate keeps of the catalog: its test-split rows, in catalog order.

    index : (t,) int64 catalog rows; scores : {column: (t,) float64 logits};
    label_pos : (t,) int64 row of each in the labels table, -1 if none; in_catalog : (m,)
    bool, which labels rows any catalog object (of any split) matches; n_catalog : objects
    in the catalog; n_split : (3,) objects per split code (train, val, test).
    """

    index: np.ndarray
    scores: dict
    label_pos: np.ndarray
    in_catalog: np.ndarray
    n_catalog: int
    n_split: np.ndarray


class SplitLookup:
    """Split codes of catalog ``index`` values, from ``results/split.fits``.

    The table ``skysift split`` writes has ``index`` 0..n-1 in order: a code is then looked
    up at its row of the memory-mapped ``split`` column, after a block-wise check of that
    order (the file's pages, 9 bytes per object, are read through the map; nothing else is
    held). Any other table (rows in another
    order, gaps) is held sorted in memory (9 bytes per object). Raises DataError for
    repeated indices or codes other than 0/1/2, as :func:`split_of`.
    """

    def __init__(self, path: str | Path, block_rows: int | None = None) -> None:
        block_rows = block_rows or BLOCK_ROWS
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: split table not found; run the step that makes it "
                            f"(snakemake {path})")
        self.path = path
        try:
            self._hdul = fits.open(path, memmap=True)
            data = self._hdul[1].data
            names = list(data.columns.names) if data is not None else []
        except Exception as exc:  # astropy raises many types for unreadable files
            raise DataError(f"{path}: cannot read the split table ({exc}); delete it and "
                            "re-run its rule") from None
        missing = [c for c in ("index", "split") if c not in names]
        if missing:
            self._hdul.close()
            raise DataError(f"{path}: split table lacks columns {missing}; columns are "
                            f"{', '.join(names)}; delete it and re-run its rule")
        self.n = len(data) if data is not None else 0
        self.dense = True
        for lo in range(0, self.n, block_rows):
            block = data[lo:lo + block_rows]
            ref = np.asarray(block["index"], np.int64)
            if not np.isin(np.asarray(block["split"]), (0, 1, 2)).all():
                self._bad()
            if self.dense and not np.array_equal(ref, np.arange(lo, lo + len(ref))):
                self.dense = False
        if self.dense:
            self.code = data["split"] if self.n else np.zeros(0, np.uint8)
        else:
            ref = np.asarray(data["index"], np.int64)
            order = np.argsort(ref, kind="stable")
            self.ref, self.code = ref[order], np.asarray(data["split"])[order]
            if (self.ref[1:] == self.ref[:-1]).any():
                self._bad()

    def _bad(self):
        self._hdul.close()
        raise DataError(f"{self.path}: split table has repeated indices or split values other "
                        "than 0/1/2; delete it and re-run split")

    def slots(self, index: np.ndarray) -> np.ndarray:
        """Row of each catalog ``index`` (k,) in the split table (sorted), -1 if absent."""
        if self.dense:
            return np.where((index >= 0) & (index < self.n), index, -1)
        if not self.ref.size:
            return np.full(index.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.ref, index), self.ref.size - 1)
        return np.where(self.ref[pos] == index, pos, -1)

    def codes(self, slots: np.ndarray) -> np.ndarray:
        return np.asarray(self.code[slots], np.uint8)

    def close(self) -> None:
        self._hdul.close()


def _check_columns(path: Path, names: Sequence[str], score_columns: Mapping[str, str]) -> None:
    """DataError naming the file and the fix when ``index``, ``id`` or a score column lacks."""
    missing = [c for c in ("index", "id") if c not in names]
    if missing:
        raise DataError(f"{path}: scores catalog lacks columns {missing}; columns are "
                        f"{', '.join(names)}; delete it and re-run its rule")
    for label, column in score_columns.items():
        if column not in names:
            have = [c for c in names if c.startswith("score_")] or ["none"]
            raise DataError(
                f"{path}: no score column '{column}' for model {label} (score columns: "
                f"{', '.join(have)}); re-run infer and gather with this config "
                "(snakemake --forcerun infer gather), or remove it from tasks/models")


def catalog_blocks(path: str | Path, columns: Sequence[str], score_columns: Mapping[str, str],
                   block_rows: int | None = None):
    """``{column: (k,) array}`` of ``columns``, ``block_rows`` rows at a time, part after part
    of the catalog (one FITS file memory-mapped, or the folder of per-shard FITS or Parquet
    parts); each part's columns checked first (:func:`_check_columns`)."""
    block_rows = block_rows or BLOCK_ROWS
    for part in catalog_parts(path):
        try:
            if part.suffix == ".parquet":
                import pyarrow.parquet as pq
                pfile = pq.ParquetFile(part)
                _check_columns(part, pfile.schema_arrow.names, score_columns)
                for batch in pfile.iter_batches(batch_size=block_rows, columns=list(columns)):
                    yield {c: batch.column(c).to_numpy(zero_copy_only=False) for c in columns}
                continue
            yield from _fits_blocks(part, columns, score_columns, block_rows)
        except DataError:
            raise
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise DataError(f"{part}: unreadable catalog ({exc}); delete it and re-run "
                            "gather") from None


def _big_endian(dtype: np.dtype) -> np.dtype:
    """``dtype`` (a record) with every numeric field big-endian, as FITS stores it."""
    fields = dtype.fields
    return np.dtype({"names": list(dtype.names),
                     "formats": [f[0].newbyteorder(">") if f[0].kind in "iuf" else f[0]
                                 for f in (fields[n] for n in dtype.names)],
                     "offsets": [fields[n][1] for n in dtype.names],
                     "itemsize": dtype.itemsize})


def _fits_blocks(part: Path, columns: Sequence[str], score_columns: Mapping[str, str],
                 block_rows: int):
    """Blocks of a FITS table read with plain reads at the rows' offsets: a memory map would
    leave every page of the file resident in this process. Columns with a scale or zero
    (TSCAL, TZERO: e.g. unsigned ids) are read through astropy's memory map instead."""
    with fits.open(part, memmap=True) as hdul:  # the header only: no row is read here
        hdu = hdul[1]
        names = list(hdu.columns.names)
        _check_columns(part, names, score_columns)
        n, dtype = int(hdu.header["NAXIS2"]), _big_endian(hdu.columns.dtype)
        plain = dtype.itemsize == int(hdu.header["NAXIS1"]) and all(
            hdu.columns[c].bscale in (None, 1) and hdu.columns[c].bzero in (None, 0)
            and hdu.columns[c].format[-1:] != "L" for c in columns)
        if not plain:
            data = hdu.data
            for lo in range(0, n, block_rows):
                block = data[lo:lo + block_rows]  # rows first: only they are converted
                yield {c: np.array(block[c]) for c in columns}
            return
        offset = hdul.fileinfo(1)["datLoc"]
    with open(part, "rb") as fh:
        for lo in range(0, n, block_rows):
            fh.seek(offset + lo * dtype.itemsize)
            rec = np.fromfile(fh, dtype=dtype, count=min(block_rows, n - lo))
            yield {c: (np.char.rstrip(rec[c]) if rec[c].dtype.kind == "S"  # FITS pads text
                       else rec[c].astype(rec[c].dtype.newbyteorder("="))) for c in columns}


class _Seen:
    """A bit per split-table row: whether a catalog row of that index was read already."""

    def __init__(self, n: int) -> None:
        self.bits = np.zeros((n + 7) // 8, np.uint8)

    def add(self, slots: np.ndarray) -> np.ndarray:
        """Mark ``slots`` (k,) and return those seen before or repeated among them."""
        byte, bit = slots >> 3, (np.uint8(1) << (slots & 7).astype(np.uint8))
        again = slots[(self.bits[byte] & bit) != 0]
        uniq, counts = np.unique(slots, return_counts=True)
        np.bitwise_or.at(self.bits, byte, bit)
        return np.concatenate([again, uniq[counts > 1]])


def read_test_rows(catalog_path: str | Path, score_columns: Mapping[str, str],
                   split_path: str | Path, label_keys: np.ndarray,
                   block_rows: int | None = None) -> TestRows:
    """The test-split rows of the scores catalog, read in blocks of ``block_rows`` rows
    (default :data:`BLOCK_ROWS`).

    Every row's ``index`` is looked up in the split table (:class:`SplitLookup`) and its id
    matched to ``label_keys`` (:func:`read_labels`; exactly, as :func:`match_ids`) to count
    the labels the catalog holds; only test rows keep their index, label row and scores.
    Memory: one block, a bit per split-table row (repeated indices), the labels' keys, and
    the test rows (8 + 8 + 8 per score column bytes each); never the whole catalog.

    score_columns : {"task/model": column}. Raises DataError, naming the file and the fix,
    for a missing catalog or column, a repeated catalog index, or a catalog object without
    a split.
    """
    catalog_path = Path(catalog_path)
    if not catalog_path.exists():
        raise DataError(f"{catalog_path}: scores catalog not found; run the step that makes "
                        f"it (snakemake {catalog_path})")
    split = SplitLookup(split_path, block_rows)
    order = np.argsort(label_keys, kind="stable")
    sorted_keys, text_keys, text_order = label_keys[order], None, None
    columns = ["index", "id", *dict.fromkeys(score_columns.values())]
    keep = {"index": [], "label_pos": [], **{c: [] for c in columns[2:]}}
    in_catalog = np.zeros(label_keys.size, bool)
    n_split, n_catalog, warned = np.zeros(3, np.int64), 0, False
    seen = _Seen(split.n)
    try:
        for block in catalog_blocks(catalog_path, columns, score_columns, block_rows):
            index = np.asarray(block["index"], np.int64)
            slots = split.slots(index)
            if (slots < 0).any():
                missing = index[slots < 0]
                raise DataError(f"{split_path}: {missing.size} catalog objects have no split "
                                f"(e.g. index {missing[:5].tolist()}); the split is stale: "
                                "re-run split and gather")
            again = seen.add(slots)
            if again.size:
                raise DataError(f"{catalog_path}: catalog indices occur more than once (e.g. "
                                f"{index[np.isin(slots, again)][:5].tolist()}); delete it and "
                                "re-run gather")
            code = split.codes(slots)
            n_split += np.bincount(code, minlength=3)[:3]
            n_catalog += index.size
            keys = id_keys(block["id"], f"{catalog_path}: column 'id'")
            if mixed(keys, label_keys):
                if not warned:
                    log.warning("catalog ids are %s but label ids are %s: matching them as "
                                "decimal text", keys.dtype, label_keys.dtype)
                    warned = True
                if text_keys is None:
                    text_order = np.argsort(label_keys.astype(str), kind="stable")
                    text_keys = label_keys.astype(str)[text_order]
                pos, where = find_sorted(text_keys, keys.astype(str)), text_order
            else:
                pos, where = find_sorted(sorted_keys, keys), order
            pos = np.where(pos >= 0, where[np.maximum(pos, 0)], -1) if where.size else pos
            in_catalog[pos[pos >= 0]] = True
            test = code == TEST
            keep["index"].append(index[test])
            keep["label_pos"].append(pos[test])
            for column in columns[2:]:
                keep[column].append(np.asarray(np.ma.getdata(block[column]),
                                               np.float64)[test])
    finally:
        split.close()

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return TestRows(index=cat(keep["index"], np.int64),
                    scores={c: cat(keep[c], np.float64) for c in columns[2:]},
                    label_pos=cat(keep["label_pos"], np.int64), in_catalog=in_catalog,
                    n_catalog=int(n_catalog), n_split=n_split)
