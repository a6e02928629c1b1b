"""The scores tables (``results/scores/{shard}.fits``, then the catalog): FITS cards,
atomic FITS and CSV writing, a FITS table streamed block by block, reading a scores table
back (docs/formats.md)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift.errors import DataError
from skysift.io import atomic_output

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
