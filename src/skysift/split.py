"""Train/validation/test split as a pure function of the object id.

Each id's canonical bytes (decimal string for integer ids, UTF-8 for strings) are hashed
with keyed BLAKE2b (key = ``split.salt``, 8-byte digest read big-endian as a uint64); the
top 53 bits divided by 2**53 give ``u`` in [0, 1) (``uint64 / 2**64`` rounded down, so
``u`` never reaches 1). ``u < train`` is train, ``u < train + val`` validation, the rest
test. The split is therefore the same on every machine, in every run and in any catalog
order, and an object keeps its split when the catalog grows.

    python -m skysift.split --config-json J --out results/split.fits
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift import cli
from skysift.catalog import read_catalog
from skysift.errors import ConfigError, SurveyError
from skysift.io import atomic_output, id_array, provenance

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


def canonical_id_bytes(ids: Iterable) -> list[bytes]:
    """Canonical bytes of each id: decimal string for integers, UTF-8 for strings.

    Bytes ids (as stored in HDF5 by :func:`skysift.io.id_array`) are taken as UTF-8
    already, so ``b"abc"`` and ``"abc"`` hash alike, as do ``42`` and ``np.int64(42)``.
    """
    arr = np.asarray(ids)
    if arr.size == 0:
        return []
    if arr.dtype.kind in "iu":
        return [str(v).encode("ascii") for v in arr.ravel().tolist()]
    if arr.dtype.kind == "S":
        return [bytes(v) for v in arr.ravel().tolist()]
    if arr.dtype.kind == "U":
        return [v.encode("utf-8") for v in arr.ravel().tolist()]
    if arr.dtype.kind == "O":
        return [_one_id_bytes(v) for v in arr.ravel().tolist()]
    raise SurveyError(f"object ids have dtype {arr.dtype}; ids must be integers or strings "
                      "(a float loses digits above 2**53)")


def _one_id_bytes(value) -> bytes:
    if isinstance(value, (bool, np.bool_)):
        raise SurveyError(f"object id {value!r} is a boolean; ids must be integers or strings")
    if isinstance(value, (int, np.integer)):
        return str(int(value)).encode("ascii")
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise SurveyError(f"object id {value!r} has type {type(value).__name__}; "
                      "ids must be integers or strings")


def hash_unit(ids: Iterable, salt: str | bytes) -> np.ndarray:
    """Keyed BLAKE2b of each id mapped to [0, 1).

    Parameters
    ----------
    ids : (n,) integer, string or bytes ids.
    salt : BLAKE2b key (a str is UTF-8 encoded), at most 64 bytes.

    Returns
    -------
    (n,) float64 in [0, 1): the digest as a big-endian uint64, top 53 bits / 2**53.
    """
    key = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
    if len(key) > hashlib.blake2b.MAX_KEY_SIZE:
        raise ConfigError(f"split.salt is {len(key)} bytes; BLAKE2b keys are at most "
                          f"{hashlib.blake2b.MAX_KEY_SIZE} bytes: choose a shorter salt")
    base = hashlib.blake2b(key=key, digest_size=8)
    digests = []
    for item in canonical_id_bytes(ids):
        h = base.copy()  # the keyed state, without re-keying per id
        h.update(item)
        digests.append(h.digest())
    words = np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)
    return (words >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def split_edges(fractions: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """Upper edges in [0, 1] of the train and val intervals of ``u``.

    ``fractions`` is ``{train, val, test}`` (as ``split.fractions``) or a 3-sequence; the
    fractions must be non-negative and sum to 1.
    """
    if isinstance(fractions, Mapping):
        missing = [k for k in SPLIT_NAMES if k not in fractions]
        if missing:
            raise ConfigError(f"split.fractions lacks {missing}; give train, val and test")
        values = [float(fractions[k]) for k in SPLIT_NAMES]
    else:
        values = [float(v) for v in fractions]
    if len(values) != 3 or not all(np.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"split.fractions must be three non-negative numbers, got {fractions}")
    total = sum(values)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"split.fractions must sum to 1, got {fractions}")
    # Dividing by the sum makes the last edge exactly 1 when test is 0.
    return np.array([values[0], values[0] + values[1]]) / (values[0] + values[1] + values[2])


def assign_split(ids: Iterable, fractions: Mapping[str, float] | Sequence[float],
                 salt: str | bytes) -> np.ndarray:
    """Assign each id to train (0), val (1) or test (2).

    Parameters
    ----------
    ids : (n,) integer, string or bytes ids (never floats).
    fractions : ``{train, val, test}`` fractions summing to 1.
    salt : the project's ``split.salt``.

    Returns
    -------
    (n,) uint8 split codes; a pure function of (id, fractions, salt).
    """
    edges = split_edges(fractions)
    return np.searchsorted(edges, hash_unit(ids, salt), side="right").astype(np.uint8)


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
    """Command-line arguments of ``python -m skysift.split``."""
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
    """Entry point of ``python -m skysift.split``; returns the exit code."""
    return cli.run(_run, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
