"""Train/val/test from a keyed BLAKE2b hash of the object id: stable across runs, machines and
catalog orders (README, Conventions). Pure functions; the split step writes the table."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from skysift.errors import ConfigError, SurveyError

SPLIT_NAMES = ("train", "val", "test")


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
