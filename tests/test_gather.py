"""Gather: one catalog sorted by index, ids exact in FITS and CSV, candidates ranked."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.table import Table

from skysift import gather
from skysift.infer import ids_for_fits, write_fits_table

BIG = 2**62 + 1  # far above 2**53: a float would lose its last digits
CONFIG = {"infer": {"top_k": 3}, "tasks": [{"name": "lens", "label": "is_lens"},
                                            {"name": "merger", "label": "is_merger"}],
          "models": [{"name": "cnn", "architecture": "baseline3"}]}


def scores_file(path, index, ids, lens, tile, extra=None):
    n = len(index)
    table = Table()
    table["index"] = np.asarray(index, dtype=np.int64)
    table["id"] = ids_for_fits(np.asarray(ids))
    table["ra"] = np.linspace(10, 11, n)
    table["dec"] = np.linspace(-1, 1, n)
    table["tile"] = np.full(n, tile.encode(), dtype="S8")
    table["flags"] = (np.asarray(index) % 3).astype(np.uint8)
    table["score_lens_cnn"] = np.asarray(lens, dtype=np.float32)
    table["score_merger_cnn"] = -np.asarray(lens, dtype=np.float32)
    for name, values in (extra or {}).items():
        table[name] = np.asarray(values, dtype=np.float32)
    write_fits_table(path, table, [("SEED", 1)])
    return path


def run(tmp_path, files, config=CONFIG):
    return gather.main(["--config-json", json.dumps(config), "--scores", *map(str, files),
                        "--out", str(tmp_path / "catalog.fits"),
                        "--csv", str(tmp_path / "catalog.csv"),
                        "--candidates-dir", str(tmp_path / "candidates")])


@pytest.fixture
def int_files(tmp_path):
    return [
        scores_file(tmp_path / "b.fits", [7, 2, 9], [BIG + 7, BIG + 2, BIG + 9],
                    [0.5, 2.0, 0.5], "b"),
        scores_file(tmp_path / "a.fits", [4, 0], [BIG + 4, BIG], [2.0, -1.0], "a"),
        scores_file(tmp_path / "empty.fits", [], np.zeros(0, np.int64), [], "c"),
    ]


def test_catalog_is_sorted_and_keeps_int64_ids(tmp_path, int_files):
    assert run(tmp_path, int_files) == 0
    cat = Table.read(tmp_path / "catalog.fits")
    assert list(cat["index"]) == [0, 2, 4, 7, 9]
    assert list(cat["id"]) == [BIG, BIG + 2, BIG + 4, BIG + 7, BIG + 9]
    assert list(cat["tile"]) == ["a", "b", "a", "b", "b"]
    assert cat.meta["SEED"] == 42 and "config_hash" in cat.meta
    with open(tmp_path / "catalog.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [str(BIG + i) for i in (0, 2, 4, 7, 9)]
    assert list(rows[0]) == ["index", "id", "ra", "dec", "tile", "flags",
                             "score_lens_cnn", "score_merger_cnn"]
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["n_rows"] == 5 and sidecar["counts"]["n_files"] == 3
    assert sidecar["counts"]["n_empty_files"] == 1 and sidecar["counts"]["n_tiles"] == 2
    assert sidecar["counts"]["flags"] == {"EDGE": 2, "MASKED": 1}  # flags 0, 2, 1, 1, 0
    assert [c["name"] for c in sidecar["columns"]][:2] == ["index", "id"]
    assert sidecar["provenance"]["seed"] == 42


def test_candidates_are_ranked_with_ties_by_index(tmp_path, int_files):
    assert run(tmp_path, int_files) == 0
    with open(tmp_path / "candidates" / "lens.csv") as fh:
        lens = list(csv.DictReader(fh))
    # scores: index 2 -> 2.0, 4 -> 2.0, 7 -> 0.5, 9 -> 0.5, 0 -> -1.0; top_k = 3
    assert [(r["rank"], r["index"], r["id"]) for r in lens] == [
        ("1", "2", str(BIG + 2)), ("2", "4", str(BIG + 4)), ("3", "7", str(BIG + 7))]
    with open(tmp_path / "candidates" / "merger.csv") as fh:
        merger = list(csv.DictReader(fh))
    assert [r["index"] for r in merger] == ["0", "7", "9"]


def test_string_ids_survive(tmp_path):
    files = [scores_file(tmp_path / "s.fits", [1, 0], ["J1+ñ, b", "0042"], [1.0, 0.0], "s")]
    assert run(tmp_path, files) == 0
    with open(tmp_path / "catalog.csv", encoding="utf-8") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == ["0042", "J1+ñ, b"]
    cat = gather.read_scores(tmp_path / "catalog.fits")
    assert list(cat["id"]) == ["0042", "J1+ñ, b"]


def test_only_empty_tiles_give_an_empty_catalog(tmp_path):
    files = [scores_file(tmp_path / "e.fits", [], np.zeros(0, np.int64), [], "e")]
    assert run(tmp_path, files) == 0
    assert len(Table.read(tmp_path / "catalog.fits")) == 0
    assert (tmp_path / "candidates" / "lens.csv").read_text().startswith("rank,index,id")


def test_duplicate_index_and_missing_task_are_user_errors(tmp_path, int_files, capsys):
    dup = scores_file(tmp_path / "dup.fits", [4], [BIG + 4], [0.0], "d")
    assert run(tmp_path, int_files + [dup]) == 2
    assert "occur in several score files" in capsys.readouterr().err
    config = {**CONFIG, "tasks": CONFIG["tasks"] + [{"name": "ring", "label": "is_ring"}]}
    assert run(tmp_path, int_files, config) == 2
    assert "['score_ring_cnn']" in capsys.readouterr().err
    assert not (tmp_path / "catalog.fits").exists()


def test_candidates_follow_the_primary_model(tmp_path):
    files = [scores_file(tmp_path / "p.fits", [0, 1, 2], [5, 6, 7], [3.0, 2.0, 1.0], "p",
                         extra={"score_lens_inv": [-1.0, 0.0, 9.0]})]
    config = {**CONFIG, "models": [{"name": "cnn", "architecture": "baseline3"},
                                   {"name": "inv", "architecture": "d4", "tasks": ["lens"],
                                    "primary": True}]}
    assert run(tmp_path, files, config) == 0
    with open(tmp_path / "candidates" / "lens.csv") as fh:
        assert [r["index"] for r in csv.DictReader(fh)] == ["2", "1", "0"]
    with open(tmp_path / "candidates" / "merger.csv") as fh:  # cnn: the only merger model
        assert [r["index"] for r in csv.DictReader(fh)] == ["2", "1", "0"]
    sidecar = json.loads((tmp_path / "catalog.json").read_text())
    assert sidecar["counts"]["tasks"]["lens"]["ranked_by"] == "score_lens_inv"
    assert sidecar["counts"]["tasks"]["merger"]["ranked_by"] == "score_merger_cnn"
    config["models"][0]["primary"] = True
    config["models"][0]["tasks"] = ["lens"]
    assert run(tmp_path, files, config) == 2  # two primaries for lens, none for merger
