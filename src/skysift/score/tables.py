"""The scores tables (``results/scores/{shard}.fits``, then the catalog): FITS cards,
atomic FITS and CSV writing, a FITS table streamed block by block, reading a scores table
back (docs/formats.md)."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from skysift.errors import DataError
from skysift.io import atomic_output, partial_path

#: Columns every scores table holds besides the models' scores.
BASE_COLUMNS = ("index", "id", "ra", "dec", "tile", "flags")


def header_cards(items: Mapping) -> list[tuple[str, object]]:
    """FITS (key, value) cards: keys up to 8 characters as is, longer ones as HIERARCH."""
    cards = []
    for key, value in items.items():
        if value is None:
            continue
        short = len(key) <= 8 and re.fullmatch(r"[A-Za-z0-9_-]+", key)
        cards.append((key.upper() if short else f"HIERARCH {key}", value))
    return cards


def write_fits_table(path: str | Path, table: Table, cards: Sequence[tuple[str, object]]) -> None:
    """Write ``table`` as a binary-table extension with ``cards`` in its header, atomically."""
    hdu = fits.table_to_hdu(table)
    for key, value in cards:
        hdu.header[key] = value
    with atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, output_verify="exception")


def read_scores(path: str | Path) -> Table:
    """Read one scores table, with text columns decoded from UTF-8 to str."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: scores file not found; run infer for it (snakemake {path})")
    try:
        table = Table.read(path, format="fits", character_as_bytes=True)
    except Exception as exc:  # astropy raises many types for broken FITS files
        raise DataError(f"{path}: unreadable scores table ({exc}); delete it and re-run infer") \
            from None
    missing = [c for c in BASE_COLUMNS if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; delete it and re-run infer")
    for name in table.colnames:
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(np.asarray(table[name]), "utf-8")
    table.meta.clear()
    return table


def write_csv(table: Table, path: str | Path) -> None:
    """Write a table as CSV atomically (int64 ids as exact decimal digits)."""
    with atomic_output(path) as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)


def ids_for_fits(ids: np.ndarray) -> np.ndarray:
    """Ids as a FITS column: int64 unchanged, strings as UTF-8 bytes (never through a float)."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind in "OU":
        ids = np.array([v if isinstance(v, bytes) else str(v).encode() for v in ids.tolist()],
                       dtype=bytes)
    return ids.astype("S1") if ids.dtype.itemsize == 0 else ids


class FitsStream:
    """A FITS binary table written row block by row block: header first, rows appended.

    Every block must have the same columns and formats; ``n_rows`` is the total.
    """

    def __init__(self, fh, first: Table, n_rows: int, cards: Sequence[tuple[str, object]]):
        self.fh, self.n_rows, self.written = fh, n_rows, 0
        hdu = fits.table_to_hdu(first)
        self.header = hdu.header
        self.header["NAXIS2"] = n_rows
        for key, value in cards:
            self.header[key] = value
        fh.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        fh.write(self.header.tostring().encode("ascii"))

    def append(self, table: Table) -> None:
        """Append the rows of ``table`` (encoded by astropy exactly as a whole-table write)."""
        if not len(table):
            return
        hdu = fits.table_to_hdu(table)
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
        for key in ("NAXIS1", "TFIELDS"):
            if hdu.header[key] != self.header[key]:
                raise DataError(f"internal error: row block {key} {hdu.header[key]} differs "
                                f"from the catalog's {self.header[key]}")
        start = len(fits.PrimaryHDU().header.tostring()) + len(hdu.header.tostring())
        self.fh.write(buf.getvalue()[start:start + hdu.header["NAXIS1"] * len(table)])
        self.written += len(table)

    def close(self) -> None:
        """Pad the data to a whole FITS block; check the row count."""
        if self.written != self.n_rows:
            raise DataError(f"internal error: wrote {self.written} rows of {self.n_rows}")
        size = self.header["NAXIS1"] * self.n_rows
        self.fh.write(b"\0" * (-size % 2880))


#: The file suffix of a catalog part per ``infer.catalog_format`` (one file per shard).
PART_SUFFIX = {"fits_per_shard": ".fits", "parquet_per_shard": ".parquet"}


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; it replaces ``path`` (a folder) only if the block succeeds."""
    path = Path(path)
    tmp = partial_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_part(stem: str | Path, table: Table, fmt: str,
               cards: Sequence[tuple[str, object]]) -> Path:
    """Write one shard's part of the catalog: ``stem`` + ``.fits`` (header ``cards``) or
    ``.parquet`` (the cards as its metadata)."""
    path = Path(str(stem) + PART_SUFFIX[fmt])
    if fmt == "fits_per_shard":
        write_fits_table(path, table, cards)
    else:
        out = table.copy(copy_data=False)
        out.meta = {str(k).removeprefix("HIERARCH "): v for k, v in cards}
        out.write(path, format="parquet")
    return path


def catalog_parts(path: str | Path) -> list[Path]:
    """The files of a catalog: ``path`` itself, or the parts in the folder ``path`` (one per
    shard, by name)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    parts = sorted(p for p in path.iterdir() if p.suffix in (".fits", ".parquet"))
    if not parts:
        raise DataError(f"{path}: no catalog parts (*.fits, *.parquet); re-run gather")
    return parts


def read_gathered(path: str | Path, columns: Sequence[str] | None = None) -> Table:
    """The gathered catalog (a FITS file, or a folder of per-shard FITS or Parquet parts:
    ``infer.catalog_format``) with the ``columns`` it has of those asked (all: None), part
    after part, so memory holds those columns only; text as str."""
    tables = []
    for part in catalog_parts(path):
        try:
            if part.suffix == ".parquet":
                import pyarrow.parquet as pq
                have = pq.read_schema(part).names
                table = Table.read(part, format="parquet", include_names=[
                    c for c in have if columns is None or c in columns])
            else:
                table = Table.read(part, format="fits", memmap=True)
                if columns is not None:
                    table = table[[c for c in table.colnames if c in columns]]
                table = Table(table, copy=True)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{part}: unreadable catalog ({exc}); delete it and re-run "
                            "gather") from None
        for name in table.colnames:  # FITS text is bytes, Parquet's str: str either way
            if table[name].dtype.kind == "S":
                table[name] = np.char.decode(np.asarray(table[name]), "utf-8")
        table.meta.clear()
        tables.append(table)
    return tables[0] if len(tables) == 1 else vstack(tables, metadata_conflicts="silent")


def for_fits(table: Table, widths: Mapping[str, int]) -> Table:
    """``table`` with its str columns as UTF-8 bytes of the given ``widths`` (FITS)."""
    out = table.copy(copy_data=False)
    for name in out.colnames:
        if out[name].dtype.kind == "U":
            out[name] = np.char.encode(np.asarray(out[name]), "utf-8").astype(
                f"S{widths.get(name, 1)}")
    return out


def write_candidate_table(candidates: Mapping[str, list[Table]], first: Table,
                           cards: Sequence[tuple[str, object]], widths: Mapping[str, int],
                           path: str | Path) -> int:
    """One FITS table of every object that is a candidate of any task (catalog order,
    every catalog column, ``candidate_tasks``: the tasks it is a candidate of)."""
    parts = [t for rows in candidates.values() for t in rows if len(t)]
    table = vstack(parts, metadata_conflicts="silent") if parts else None
    if table is None:
        table = first[:0]
        table["candidate_tasks"] = np.zeros(0, "S1")
    else:
        index = np.asarray(table["index"])
        _, first_row = np.unique(index, return_index=True)
        tasks = {int(i): [] for i in index}
        for task, rows in candidates.items():
            for t in rows:
                for i in np.asarray(t["index"]).tolist():
                    tasks[i].append(task)
        table = table[np.sort(first_row)]
        table["candidate_tasks"] = [" ".join(tasks[int(i)]) for i in table["index"]]
    table.meta.clear()
    write_fits_table(path, for_fits(table, {**widths, "candidate_tasks": max(
        [1] + [len(str(v).encode()) for v in table["candidate_tasks"]])}), cards)
    return len(table)
