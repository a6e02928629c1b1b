"""Train/validation/test split as a pure function of the object id.

Each id's canonical bytes (decimal string for integer ids, UTF-8 for strings) are hashed
with keyed BLAKE2b (key = ``split.salt``, 8-byte digest read big-endian as a uint64); the
top 53 bits divided by 2**53 give ``u`` in [0, 1) (``uint64 / 2**64`` rounded down, so
``u`` never reaches 1). ``u < train`` is train, ``u < train + val`` validation, the rest
test. The split is therefore the same on every machine, in every run and in any catalog
order, and an object keeps its split when the catalog grows.

    skysift split --config-json J --out results/split.fits
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift import cli
from skysift.errors import SurveyError
from skysift.io import atomic_output, id_array, provenance
from skysift.survey.catalog import read_catalog
from skysift.survey.hashsplit import (
    SPLIT_NAMES,
    assign_split,
)

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2












def catalog_ids(table: Table, column: str, path: str | Path) -> np.ndarray:
    """The id column as stored by skysift (int64 or UTF-8 bytes), checked for gaps."""
    col = table[column]
    mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(len(col), bool)
    if mask.any():
        rows = np.flatnonzero(mask)
        raise SurveyError(f"{path}: column '{column}' (survey.columns.id) has {rows.size} "
                          f"missing ids, first rows {rows[:5].tolist()}; every object needs an id")
    try:
        return id_array(np.asarray(col))
    except SurveyError as exc:
        raise SurveyError(f"{path}: column '{column}' (survey.columns.id): {exc}") from None


def _header_key(key: str) -> str:
    # HIERARCH spelled out: long keys without astropy's VerifyWarning.
    key = key.upper()
    return key if len(key) <= 8 and key.isalnum() else f"HIERARCH {key}"


def write_split(path: str | Path, split: np.ndarray, header: Mapping) -> None:
    """Write ``results/split.fits`` (``index``, ``split``) atomically with ``header`` cards."""
    table = Table({"index": np.arange(len(split), dtype=np.int64),
                   "split": np.asarray(split, dtype=np.uint8)})
    hdu = fits.table_to_hdu(table)
    for key, value in header.items():
        hdu.header[_header_key(key)] = value
    with atomic_output(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)


def parser() -> argparse.ArgumentParser:
    """Command-line arguments of ``skysift split``."""
    p = cli.parser("Assign every catalog object to train/val/test by a keyed hash of its id.")
    p.add_argument("--out", required=True, help="split table to write (results/split.fits)")
    return p


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    config = cli.load_config(args)
    path = config["survey"]["catalog"]
    # the catalog reader the index uses: the same ids (CSV ids with leading zeros stay
    # strings) and the same refusals (no rows, missing column, blank or duplicate ids)
    ids = read_catalog(config).ids
    fractions, salt = config["split"]["fractions"], config["split"]["salt"]
    split = assign_split(ids, fractions, salt)
    header = provenance(config, step="split", inputs=str(path))
    header.update({"salt": salt, **{f"frac_{k}": float(fractions[k]) for k in SPLIT_NAMES}})
    write_split(args.out, split, header)
    counts = np.bincount(split, minlength=3)
    seconds = time.perf_counter() - t0
    log.info("split: %d objects -> %s: train %d, val %d, test %d (salt %r) in %.2f s "
             "(%.0f objects/s)", split.size, args.out, *counts, salt, seconds,
             split.size / max(seconds, 1e-9))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skysift split``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
