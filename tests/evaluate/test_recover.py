"""Tests of skysift.evaluate.recover: position matching, ranks, Wilson interval, statuses,
training positives apart, the CLI, and the shipped lenscat catalogue end to end (offline)."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import skysift
from skysift.config import validate
from skysift.errors import DataError
from skysift.evaluate import recover as rec
from skysift.io import H5_LAYOUT_VERSION
from skysift.modelspec import model_specs
from skysift.survey.known import LENSCAT_SHA256, LENSCAT_VERSION


def test_match_is_by_sky_position_across_ra_zero():
    cat_ra = np.array([359.9999, 10.0, np.nan, 0.5])
    cat_dec = np.array([0.0, 0.0, 0.0, 0.0])
    # 0.0001 deg east of RA 0 is 0.72" from the first row across the seam
    ra = np.array([0.0001, 10.0 + 2 / 3600, np.nan, 0.5 + 0.5 / 3600, 200.0])
    dec = np.array([0.0, 0.0, 0.0, 0.0, 95.0])
    row, sep = rec.match_positions(ra, dec, cat_ra, cat_dec, 1.0)
    assert row.tolist() == [0, -1, -1, 3, -1]
    np.testing.assert_allclose(sep[[0, 3]], [0.72, 0.5], atol=1e-6)
    assert np.isnan(sep[[1, 2, 4]]).all()
    row, _ = rec.match_positions(ra[:1], dec[:1], cat_ra[:1], cat_dec[:1], 1.0)
    assert row.tolist() == [0]  # a one-row catalog
    row, _ = rec.match_positions(ra, dec, cat_ra[2:3], cat_dec[2:3], 1.0)
    assert (row == -1).all()  # no usable catalog row


def test_ranks_break_ties_by_index_and_put_nan_last():
    scores = np.array([0.5, 2.0, np.nan, 2.0, -1.0])
    index = np.array([10, 7, 1, 3, 4])
    assert rec.rank_scores(scores, index).tolist() == [3, 2, 5, 1, 4]


@pytest.mark.parametrize("k, n, lo, hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634),
                                          (10, 10, 0.7225, 1.0)])
def test_wilson_interval_matches_published_values(k, n, lo, hi):
    got = rec.wilson_interval(k, n, 0.95)
    np.testing.assert_allclose(got, (lo, hi), atol=1e-4)
    assert np.isnan(rec.wilson_interval(0, 0, 0.95)).all()


def _run_inputs():
    """Catalog rows 0-5 on a line of RA; 0, 1, 2, 4 scored, 3 rejected, 5 neither."""
    cat_ra, cat_dec = 20.0 + np.arange(6) / 60, np.zeros(6)
    scored_index = np.array([0, 1, 2, 4])
    scores = np.array([3.0, -2.0, 5.0, 3.0])  # ranks 2, 4, 1, 3
    known_ra = np.array([cat_ra[2], cat_ra[0], cat_ra[1], cat_ra[3], 40.0, np.nan, cat_ra[5]])
    known_dec = np.array([0.3 / 3600, 0, 0, 0, 0, 0, 0])
    return known_ra, known_dec, cat_ra, cat_dec, scored_index, scores


def test_every_known_lens_gets_a_status():
    known_ra, known_dec, cat_ra, cat_dec, scored_index, scores = _run_inputs()
    out = rec.recover(known_ra, known_dec, cat_ra, cat_dec, scored_index, scores,
                      np.array([3]), np.array(["off every tile"]), top_k=2, max_sep_arcsec=1.0)
    assert out["status"].tolist() == ["recovered", "recovered", "scored-below-top-k",
                                      "rejected", "off-survey", "bad-position", "not-scored"]
    assert out["index"].tolist() == [2, 0, 1, 3, -1, -1, 5]
    assert out["rank"].tolist() == [1, 2, 4, 0, 0, 0, 0]
    assert out["in_top_k"].tolist() == [True, True, False, False, False, False, False]
    assert out["reason"][3] == "off every tile"
    np.testing.assert_allclose(out["sep_arcsec"][0], 0.3, atol=1e-6)
    s = rec.summarise(out, n_scored=4, ci=0.95)
    assert (s["n_known"], s["n_matched"], s["n_scored"], s["n_in_top_k"], s["n_below_top_k"],
            s["n_rejected"], s["n_off_survey"], s["n_bad_position"], s["n_not_scored"]) == \
        (7, 5, 3, 2, 1, 1, 1, 1, 1)
    f = s["recovered_fraction"]
    assert (f["k"], f["n"], f["value"]) == (2, 5, 0.4)
    assert f["lo"] < 0.4 < f["hi"]
    assert s["rank_quantiles"]["0.5"] == 2.0 and s["rank_quantiles"]["1.0"] == 4.0
    assert s["rejected_reasons"] == {"off every tile": 1}


def test_gathers_survey_wide_ranks_are_used_verbatim():
    """With gather's rank_* (survey-wide, other shards' objects in between) no re-ranking."""
    known_ra, known_dec, cat_ra, cat_dec, scored_index, scores = _run_inputs()
    survey_ranks = np.array([7, 40, 3, 0])  # row 4 unranked (e.g. left out by infer.select)
    out = rec.recover(known_ra, known_dec, cat_ra, cat_dec, scored_index, scores,
                      np.array([3]), np.array(["off every tile"]), top_k=5, max_sep_arcsec=1.0,
                      ranks=survey_ranks)
    assert out["rank"][:3].tolist() == [3, 7, 40]
    assert out["in_top_k"][:3].tolist() == [True, False, False]
    assert out["status"][:3].tolist() == ["recovered", "scored-below-top-k", "scored-below-top-k"]


def test_cli_writes_one_row_per_known_lens(tmp_path):
    known_ra, known_dec, cat_ra, cat_dec, scored_index, scores = _run_inputs()
    ids = np.int64(2**60) + np.arange(6)
    Table({"objid": ids, "ra": cat_ra, "dec": cat_dec}).write(tmp_path / "cat.fits")
    Table({"RAJ": known_ra, "DEJ": known_dec,
           "lens": [f"L{i}" for i in range(7)]}).write(tmp_path / "known.ecsv")
    config = validate({"survey": {"kind": "files", "catalog": str(tmp_path / "cat.fits"),
                                  "labels": None, "known_lenses": str(tmp_path / "known.ecsv"),
                                  "known_lenses_columns": {"ra": "RAJ", "dec": "DEJ",
                                                           "name": "lens"}},
                       "infer": {"top_k": 2}})
    column = rec.lens_column(config)
    Table({"index": scored_index, "id": ids[scored_index], "ra": cat_ra[scored_index],
           "dec": cat_dec[scored_index], "tile": ["t"] * 4, "flags": np.zeros(4, np.uint8),
           column: scores}).write(tmp_path / "catalog.fits")
    Table({"index": [3], "id": ids[[3]], "reason": ["off every tile"],
           "stage": ["index"]}).write(tmp_path / "rejects.ecsv")
    out, summary = tmp_path / "r" / "known.csv", tmp_path / "r" / "known.json"
    assert rec.main(["--config-json", json.dumps(config), "--catalog",
                     str(tmp_path / "catalog.fits"), "--rejects", str(tmp_path / "rejects.ecsv"),
                     "--out", str(out), "--summary", str(summary)]) == 0
    table = Table.read(out, format="ascii.csv")
    assert table["name"].tolist() == [f"L{i}" for i in range(7)]
    assert table["status"].tolist()[:4] == ["recovered", "recovered", "scored-below-top-k",
                                            "rejected"]
    assert int(table["id"][0]) == 2**60 + 2  # exact above 2**53
    assert table["id"].mask.tolist() == [False] * 4 + [True, True, False]
    s = json.loads(summary.read_text())
    assert s["n_known"] == 7 and s["n_in_top_k"] == 2 and s["ranked_by"] == column
    assert s["top_k"] == 2 and "provenance" in s


def test_missing_column_is_a_clear_error(tmp_path, capsys):
    Table({"ra": [1.0], "dec": [2.0]}).write(tmp_path / "known.csv")
    config = validate({"survey": {"known_lenses": str(tmp_path / "known.csv")}})
    assert rec.main(["--config-json", json.dumps(config), "--catalog", "x.fits"]) == 2
    err = capsys.readouterr().err
    assert "known.csv: no column 'name' (configured as survey.known_lenses_columns.name)" in err


# --------------------------------------------------------------------------- training positives

def test_known_lenses_the_models_trained_on_are_not_counted_as_recovered():
    """The top-ranked known lens (catalog row 2) was a labelled training positive: it is
    reported apart and the recovered fraction is over the lenses never trained on."""
    known_ra, known_dec, cat_ra, cat_dec, scored_index, scores = _run_inputs()
    out = rec.recover(known_ra, known_dec, cat_ra, cat_dec, scored_index, scores,
                      np.array([3]), np.array(["off every tile"]), top_k=2, max_sep_arcsec=1.0,
                      trained_index=np.array([2, 3]))  # 3 is rejected: never trained on
    assert out["status"].tolist() == ["training_positive", "recovered", "scored-below-top-k",
                                      "rejected", "off-survey", "bad-position", "not-scored"]
    assert out["training_positive"].tolist() == [True] + [False] * 6
    assert out["rank"][0] == 1 and out["in_top_k"][0]  # its rank is still reported
    s = rec.summarise(out, n_scored=4, ci=0.95)
    assert (s["n_in_top_k"], s["n_training_positive"], s["n_training_positive_in_top_k"],
            s["n_matched"], s["n_scored"]) == (1, 1, 1, 5, 2)
    f = s["recovered_fraction"]
    assert (f["k"], f["n"], f["value"]) == (1, 4, 0.25)
    assert s["recovered_fraction_of_all"] == pytest.approx(1 / 6)
    assert s["rank_quantiles"]["0.0"] == 2.0  # rank 1 was trained on


def _trainset(path, task="lens"):
    """A lens training set: real object 0 a labelled positive of train, 1 of val, 2 of test;
    4 a host of simulated positives in train (twice); 3 a negative; a positive on blank sky."""
    with h5py.File(path, "w") as fh:
        fh.attrs.update(h5_layout_version=H5_LAYOUT_VERSION, task=task)
        fh["index"] = np.array([0, 1, 2, 4, 4, 3, -1], np.int64)
        fh["label"] = np.array([1, 1, 1, 1, 1, 0, 1], np.uint8)
        fh["split"] = np.array([0, 1, 2, 0, 0, 0, 0], np.uint8)
    return path


def test_trained_positives_are_the_positive_train_and_val_objects(tmp_path):
    path = _trainset(tmp_path / "lens.h5")
    assert rec.trained_positives(path, "lens").tolist() == [0, 1, 4]
    with pytest.raises(DataError, match="a training set of task 'lens', not of the lens task"):
        rec.trained_positives(path, "ring")


def test_cli_reports_training_positives_apart(tmp_path):
    ids = np.array([f"obj{i:03d}" for i in range(6)])
    cat_ra, cat_dec = 20.0 + np.arange(6) / 60, np.zeros(6)
    Table({"objid": ids, "ra": cat_ra, "dec": cat_dec}).write(tmp_path / "cat.fits")
    Table({"ra": cat_ra[[0, 1, 2, 4]], "dec": cat_dec[[0, 1, 2, 4]],
           "name": ["L0", "L1", "L2", "L4"]}).write(tmp_path / "known.csv")
    config = validate({"survey": {"kind": "files", "catalog": str(tmp_path / "cat.fits"),
                                  "labels": None, "known_lenses": str(tmp_path / "known.csv")},
                       "infer": {"top_k": 2}})
    column = rec.lens_column(config)
    Table({"index": np.arange(6), "id": ids, "ra": cat_ra, "dec": cat_dec, "tile": ["t"] * 6,
           "flags": np.zeros(6, np.uint8),
           column: [5.0, 4.0, 3.0, 0.0, 0.0, 0.0]}).write(tmp_path / "catalog.fits")
    Table({"index": np.zeros(0, np.int64), "reason": np.zeros(0, str)}).write(
        tmp_path / "rejects.ecsv")
    out, summary = tmp_path / "known_lenses.csv", tmp_path / "known_lenses.json"
    argv = ["--config-json", json.dumps(config), "--catalog", str(tmp_path / "catalog.fits"),
            "--rejects", str(tmp_path / "rejects.ecsv"), "--out", str(out), "--summary",
            str(summary)]
    assert rec.main([*argv, "--trainset", str(_trainset(tmp_path / "lens.h5"))]) == 0
    table = Table.read(out, format="ascii.csv")
    # L0 (rank 1) and L1 (rank 2) were trained on; L2 (test split) ranks 3, below the top 2
    assert table["status"].tolist() == ["training_positive", "training_positive",
                                        "scored-below-top-k", "training_positive"]
    assert table["training_positive"].tolist() == ["True", "True", "False", "True"]  # CSV text
    s = json.loads(summary.read_text())
    assert (s["n_training_positive"], s["n_training_positive_in_top_k"], s["n_in_top_k"]) == \
        (3, 2, 0)
    assert s["recovered_fraction"]["n"] == 1 and s["recovered_fraction"]["value"] == 0.0
    assert s["n_trained_objects"] == 3 and s["trained_from"].endswith("lens.h5")
    assert rec.main(argv) == 0  # without the training set: L0 and L1 are recoveries
    s = json.loads(summary.read_text())
    assert (s["n_training_positive"], s["n_in_top_k"], s["trained_from"]) == (0, 2, None)


# --------------------------------------------------------------------------- lenscat, offline

#: Run in a fresh interpreter: no network (every connection refused), the heavy stack lenscat
#: pulls in refused at import, gather then recover; prints the heavy modules loaded.
OFFLINE_RUN = r"""
import json, socket, sys

def _refuse(*args, **kwargs):
    raise OSError("network use during an offline run")

socket.socket.connect = socket.socket.connect_ex = _refuse
socket.getaddrinfo = socket.create_connection = _refuse
HEAVY = ("lenscat", "healpy", "ligo", "lal", "lalsuite")

class _NoHeavy:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} imported")

sys.meta_path.insert(0, _NoHeavy())
from skysift.evaluate import recover
from skysift.score import gather
gather_argv, recover_argv = json.loads(sys.argv[1])
codes = [gather.main(gather_argv), recover.main(recover_argv)]
print(json.dumps({"codes": codes,
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)}))
"""


def _lenscat_rows() -> list[dict]:
    """The shipped lenscat CSV, read here without skysift."""
    path = Path(skysift.__file__).parent / "data" / "lenscat" / "catalog.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_lenscat_flags_and_counts_catalogued_lenses_offline(tmp_path):
    """A survey placed at three confident galaxy-scale lenses of lenscat, a probable one and a
    confident cluster (both left out by the default filters) and unrelated objects: gather
    flags the three, recover counts them, with no network and without the lenscat stack."""
    rows = _lenscat_rows()
    pick = ([r for r in rows if (r["grading"], r["type"]) == ("confident", "galaxy")][100:103]
            + [next(r for r in rows if (r["grading"], r["type"]) == ("probable", "galaxy")),
               next(r for r in rows if (r["grading"], r["type"]) == ("confident", "cluster"))])
    lens_ra = np.array([float(r["RA [deg]"]) for r in pick])
    lens_dec = np.array([float(r["DEC [deg]"]) for r in pick]) + 0.3 / 3600  # 0.3" off
    # objects 0-4 on the lenses, 5-9 one arcminute north of them (never matched)
    ra, dec = np.tile(lens_ra, 2), np.concatenate([lens_dec, lens_dec + 1 / 60])
    ids = np.int64(2**60) + np.arange(10)
    Table({"objid": ids, "ra": ra, "dec": dec}).write(tmp_path / "cat.fits")
    config = validate({"survey": {"kind": "files", "catalog": str(tmp_path / "cat.fits"),
                                  "labels": None, "known_lenses": "lenscat"},
                       "infer": {"top_k": 4}})
    logits = np.array([9.0, 1.0, 0.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0])  # lens 0 rank 1, 1 rank 8
    for shard, rows_ in (("s0", [0, 4, 6, 8]), ("s1", [1, 3, 5, 7, 9])):  # 2 is rejected
        t = Table({"index": np.array(rows_, np.int64), "id": ids[rows_], "ra": ra[rows_],
                   "dec": dec[rows_], "tile": [shard] * len(rows_),
                   "flags": np.zeros(len(rows_), np.uint8)})
        for spec in model_specs(config):
            t[spec.column] = logits[rows_].astype(np.float32)
        t.write(tmp_path / f"{shard}.fits")
    Table({"index": [2], "id": ids[[2]], "reason": ["off every tile"],
           "stage": ["index"]}).write(tmp_path / "rejects.ecsv")
    cfg, res = json.dumps(config), tmp_path / "results"
    gather_argv = ["--config-json", cfg, "--scores", str(tmp_path / "s0.fits"),
                   str(tmp_path / "s1.fits"), "--out", str(res / "catalog.fits"),
                   "--csv", str(res / "catalog.csv"), "--candidates-dir",
                   str(res / "candidates"), "--known-lenses"]
    recover_argv = ["--config-json", cfg, "--catalog", str(res / "catalog.fits"),
                    "--rejects", str(tmp_path / "rejects.ecsv"), "--out",
                    str(res / "known.csv"), "--summary", str(res / "known.json")]
    proc = subprocess.run([sys.executable, "-c", OFFLINE_RUN,
                           json.dumps([gather_argv, recover_argv])],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {"codes": [0, 0], "heavy": []}
    catalog = Table.read(res / "catalog.fits")
    known = dict(zip(np.asarray(catalog["index"]).tolist(),
                     np.asarray(catalog["known_lens"]).tolist(), strict=True))
    assert [i for i, k in known.items() if k] == [0, 1]  # 2 was rejected, 3-4 filtered out
    names = dict(zip(np.asarray(catalog["index"]).tolist(),
                     np.ma.filled(catalog["known_name"], "").tolist(), strict=True))
    assert names[0] == pick[0]["name"].split(" | ")[0]  # the first of its aliases
    assert names[1] == pick[1]["name"].split(" | ")[0] and names[5] == ""
    header = fits.getheader(res / "catalog.fits", 1)
    assert header["LENSCAT_VERSION"] == LENSCAT_VERSION
    assert header["LENSCAT_SHA256"] == LENSCAT_SHA256
    cand = Table.read(res / "candidates" / "lens.csv", format="ascii.csv")
    assert cand["known_lens"].tolist()[:2] == ["True", "False"]  # ranks 1 and 2
    s = json.loads((res / "known.json").read_text())
    n_confident_galaxy = sum((r["grading"], r["type"]) == ("confident", "galaxy") for r in rows)
    assert s["n_known"] == n_confident_galaxy == 2038
    assert (s["n_matched"], s["n_in_top_k"], s["n_below_top_k"], s["n_rejected"]) == \
        (3, 1, 1, 1)
    assert s["n_off_survey"] == n_confident_galaxy - 3
    assert s["provenance"]["lenscat_version"] == LENSCAT_VERSION
    assert s["provenance"]["lenscat_sha256"] == LENSCAT_SHA256
    table = Table.read(res / "known.csv", format="ascii.csv")
    on = table[table["status"] != "off-survey"]
    assert sorted(on["id"].tolist()) == [int(ids[0]), int(ids[1]), int(ids[2])]
    assert set(on["grading"]) == {"confident"} and set(on["type"]) == {"galaxy"}
