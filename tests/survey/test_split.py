"""Tests of skysift.survey.split: the keyed-hash split and its CLI."""

import hashlib
import json

import numpy as np
import pytest
from astropy.table import Table

from skysift.errors import ConfigError, SurveyError
from skysift.survey.hashsplit import assign_split, hash_unit
from skysift.survey.split import main

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SALT = "skysift-v1"


def _reference(id_bytes: bytes, salt: str = SALT) -> int:
    """Independent re-implementation of the documented rule."""
    h = hashlib.blake2b(id_bytes, key=salt.encode(), digest_size=8)
    u = int.from_bytes(h.digest(), "big") / 2**64
    return 0 if u < 0.7 else (1 if u < 0.85 else 2)


def test_matches_documented_hash():
    ids = np.array([0, 1, 42, 2**53 + 1, 2**62, -7], dtype=np.int64)
    expected = [_reference(str(int(i)).encode()) for i in ids]
    assert assign_split(ids, FRACTIONS, SALT).tolist() == expected
    strings = ["J021530.1-045512", "ß-42", ""]
    assert assign_split(strings, FRACTIONS, SALT).tolist() == [
        _reference(s.encode("utf-8")) for s in strings]


def test_stable_and_independent_of_order():
    ids = np.arange(2**53, 2**53 + 500, dtype=np.int64)
    first = assign_split(ids, FRACTIONS, SALT)
    assert first.dtype == np.uint8
    assert np.array_equal(first, assign_split(ids, FRACTIONS, SALT))
    perm = np.random.default_rng(0).permutation(ids.size)
    assert np.array_equal(assign_split(ids[perm], FRACTIONS, SALT), first[perm])
    assert np.array_equal(assign_split(ids[:10], FRACTIONS, SALT), first[:10])  # no neighbours


def test_fractions_respected_on_many_ids():
    n = 10_000
    for ids in (np.arange(n, dtype=np.int64), [f"obj{i}" for i in range(n)]):
        counts = np.bincount(assign_split(ids, FRACTIONS, SALT), minlength=3) / n
        assert np.allclose(counts, [0.7, 0.15, 0.15], atol=0.02)
    uneven = assign_split(np.arange(n), {"train": 0.5, "val": 0.5, "test": 0.0}, SALT)
    assert set(np.unique(uneven)) == {0, 1} and abs(uneven.mean() - 0.5) < 0.02


def test_integer_and_string_ids_share_canonical_bytes():
    as_int = assign_split(np.array([5, 123456789012345678], dtype=np.int64), FRACTIONS, SALT)
    as_str = assign_split(["5", "123456789012345678"], FRACTIONS, SALT)
    as_bytes = assign_split(np.array([b"5", b"123456789012345678"]), FRACTIONS, SALT)
    assert np.array_equal(as_int, as_str) and np.array_equal(as_int, as_bytes)
    assert np.array_equal(hash_unit(np.array([7], dtype=np.uint64), SALT), hash_unit([7], SALT))


def test_salt_changes_split_and_bad_inputs():
    ids = np.arange(1000)
    assert not np.array_equal(assign_split(ids, FRACTIONS, SALT), assign_split(ids, FRACTIONS, "x"))
    assert assign_split([], FRACTIONS, SALT).shape == (0,)
    u = hash_unit(ids, SALT)
    assert (u >= 0).all() and (u < 1).all()
    with pytest.raises(SurveyError, match="float"):
        assign_split(np.array([1.0, 2.0]), FRACTIONS, SALT)
    with pytest.raises(ConfigError, match="sum to 1"):
        assign_split(ids, {"train": 0.7, "val": 0.7, "test": 0.1}, SALT)
    with pytest.raises(ConfigError, match="64 bytes"):
        assign_split(ids, FRACTIONS, "s" * 65)


def test_cli_writes_every_row(tmp_path):
    ids = [f"gal-{i}" for i in range(300)]
    Table({"name": ids, "ra": np.zeros(300), "dec": np.zeros(300)}).write(tmp_path / "cat.csv")
    cfg = {"survey": {"catalog": str(tmp_path / "cat.csv"), "columns": {"id": "name"}},
           "split": {"salt": "proj"}}
    out = tmp_path / "results" / "split.fits"
    assert main(["--config-json", json.dumps(cfg), "--out", str(out)]) == 0
    table = Table.read(out)
    assert table["index"].tolist() == list(range(300))
    assert np.array_equal(table["split"], assign_split(ids, FRACTIONS, "proj"))
    assert table.meta["SALT"] == "proj" and not list(out.parent.glob("*.partial"))
    cfg["survey"]["columns"]["id"] = "objid"
    assert main(["--config-json", json.dumps(cfg), "--out", str(out)]) == 2  # no such column
