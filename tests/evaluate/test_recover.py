"""Tests of skysift.evaluate.recover: position matching, ranks, Wilson interval, statuses,
the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table

from skysift.config import validate
from skysift.evaluate import recover as rec


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
