"""Evaluate keeps only the catalog's test rows, read part by part in blocks of rows
(skysift.evaluate.testrows.read_test_rows): the rows, scores and label matches of the former
whole-table read, whatever the block size, the split table's order or the catalog's form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table
from test_evaluate import FIGURES, write_inputs

from skysift.errors import DataError
from skysift.evaluate import evaluate, testrows
from skysift.ids import match_ids
from skysift.survey.split import write_split

N = 1000
COLUMNS = {"lens/cnn": "score_lens_cnn", "merger/cnn": "score_merger_cnn"}


def _survey(tmp_path, rng, ids=None):
    """A catalog of N rows (not in index order, some indices absent) as one FITS file, FITS
    parts and Parquet parts; skysift's split table (index 0..N+49) and a shuffled copy."""
    index = rng.permutation(N + 50)[:N].astype(np.int64)
    ids = np.arange(N + 50, dtype=np.int64)[index] + 2**60 if ids is None else ids[index]
    cat = Table({"index": index, "id": ids, "ra": rng.uniform(0, 1, N)})
    for column in COLUMNS.values():
        cat[column] = rng.normal(size=N).astype(np.float32)
    cat.write(tmp_path / "catalog.fits")
    for kind in ("fits", "parquet"):
        (tmp_path / kind).mkdir()
        for k, lo in enumerate(range(0, N, 300)):
            cat[lo:lo + 300].write(tmp_path / kind / f"s{k:04d}.{kind}")
    split = rng.integers(0, 3, N + 50).astype(np.uint8)
    write_split(tmp_path / "split.fits", split, {})
    order = rng.permutation(N + 50)
    Table({"index": order.astype(np.int64), "split": split[order]}).write(
        tmp_path / "shuffled.fits")
    labelled = rng.choice(N + 50, 400, replace=False)
    keys = (np.arange(N + 50, dtype=np.int64) + 2**60)[labelled]
    return cat, split, keys


def _former(cat, split, keys):
    """What evaluate kept before: the whole table, then its test rows."""
    test = split[np.asarray(cat["index"])] == 2
    pos = match_ids(np.asarray(cat["id"]), keys)
    in_catalog = np.zeros(keys.size, bool)
    in_catalog[pos[pos >= 0]] = True
    return test, pos, in_catalog


@pytest.mark.parametrize("block_rows", [7, 300, None])
def test_test_rows_are_the_whole_table_read_rows(tmp_path, block_rows):
    cat, split, keys = _survey(tmp_path, np.random.default_rng(1))
    test, pos, in_catalog = _former(cat, split, keys)
    assert 0 < test.sum() < N and 0 < (pos[test] >= 0).sum()
    for catalog in ("catalog.fits", "fits", "parquet"):
        for table in ("split.fits", "shuffled.fits"):
            got = testrows.read_test_rows(tmp_path / catalog, COLUMNS, tmp_path / table, keys,
                                        block_rows)
            assert got.index.tolist() == np.asarray(cat["index"])[test].tolist()
            assert got.label_pos.tolist() == pos[test].tolist()
            assert got.in_catalog.tolist() == in_catalog.tolist()
            assert got.n_catalog == N
            assert got.n_split.tolist() == np.bincount(split[cat["index"]], minlength=3).tolist()
            for column in COLUMNS.values():
                assert np.array_equal(got.scores[column], np.asarray(cat[column])[test])


def test_repeated_index_and_missing_split_are_errors(tmp_path):
    cat, split, keys = _survey(tmp_path, np.random.default_rng(2))
    twice = Table(cat, copy=True)
    twice["index"][900] = twice["index"][3]  # far apart: in different blocks
    twice.write(tmp_path / "twice.fits")
    with pytest.raises(DataError, match="more than once"):
        testrows.read_test_rows(tmp_path / "twice.fits", COLUMNS, tmp_path / "split.fits", keys,
                              block_rows=100)
    write_split(tmp_path / "short.fits", split[:N - 100], {})
    short = tmp_path / "short.fits"
    if (np.asarray(cat["index"]) >= N - 100).any():
        with pytest.raises(DataError, match="have no split"):
            testrows.read_test_rows(tmp_path / "catalog.fits", COLUMNS, short, keys, 100)
    with pytest.raises(DataError, match="no score column 'score_x'"):
        testrows.read_test_rows(tmp_path / "parquet", {"x/m": "score_x"}, tmp_path / "split.fits",
                              keys)


def test_metrics_do_not_depend_on_the_block_size(tmp_path, monkeypatch):
    """The hand-built catalog of test_evaluate, read one row at a time and whole: the same
    metrics.json."""
    ids = np.arange(7) + 2**60
    cfg, catalog, split = write_inputs(tmp_path, ids)
    out = {}
    for block in (1, 10**6):
        monkeypatch.setattr(testrows, "BLOCK_ROWS", block)
        work = tmp_path / str(block)
        assert evaluate.main(["--config-json", cfg, "--catalog", str(catalog), "--split",
                              str(split), "--out", str(work / "m.json"), "--roc",
                              str(work / "roc.png"),
                              *(a for f in FIGURES for a in (f"--{f}", str(work / f"{f}.png")))
                              ]) == 0
        out[block] = json.loads((work / "m.json").read_text())
    assert out[1] == out[10**6]
    assert out[1]["tasks"]["lens"]["n_test"] == 5 and out[1]["tasks"]["lens"]["n_catalog"] == 7
