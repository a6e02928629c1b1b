"""Tests of skysift check: the report of a good survey, every problem of a bad one, examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from survey_helpers import BANDS, make_wcs, write_tile

from skysift import __main__ as entry
from skysift.config import load
from skysift.survey import check

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config" / "examples").glob("*.yaml"))


def _survey(root):
    shape = (30, 30)
    wcs_a, wcs_b = make_wcs(10.0, 0.0, shape), make_wcs(10.01, 0.0, shape, rot_deg=30)
    write_tile(root, "A", wcs_a, shape)
    write_tile(root, "B", wcs_b, shape, extra={"MAGZP": 30.0})  # no PSF_FWHM key
    sky = wcs_a.pixel_to_world([5.0, 20.0, 29.0], [5.0, 9.0, 1.0])
    ra = np.concatenate([sky.ra.deg, [200.0, np.nan]])
    dec = np.concatenate([sky.dec.deg, [0.0, 1.0]])
    ids = 2**61 + np.arange(5)
    Table({"OBJID": ids, "RA": ra, "DEC": dec}).write(root / "cat.fits")
    Table({"OBJID": [ids[0], ids[1], 7], "is_lens": [1, 0, 0],
           "is_merger": [0, 0, 1]}).write(root / "labels.fits")
    return {"survey": {"kind": "files", "tiles": str(root / "tiles" / "{tile}_{band}.fits"),
                       "bands": BANDS, "catalog": str(root / "cat.fits"),
                       "columns": {"id": "OBJID", "ra": "RA", "dec": "DEC"},
                       "labels": str(root / "labels.fits"), "labels_id_column": "OBJID",
                       "known_lenses": None},
            "index": {"tiles_per_shard": 1}}


def test_report_of_a_good_survey(tmp_path):
    config = _survey(tmp_path)
    report_path = tmp_path / "check.json"
    code = entry.main(["check", "--config-json", json.dumps(config), "--report",
                       str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["bands"] == BANDS and report["n_tiles"] == 2 and report["n_catalog"] == 5
    assert [(t["tile"], t["n_objects"]) for t in report["tiles"]] == [("A", 3), ("B", 0)]
    assert np.array(report["tiles"][1]["footprint_radec"]).shape == (4, 2)
    assert report["n_assigned"] == 3
    assert report["rejects"] == {"off every tile": 1, "non-finite coordinates": 1}
    assert report["n_shards"] == 1  # B holds no object: no shard
    assert report["labels"] == {"n_rows": 3, "n_in_catalog": 2}
    messages = [p["message"] for p in report["problems"]]
    assert all(p["level"] == "warning" for p in report["problems"])
    assert any("tile B: no numeric header key PSF_FWHM" in m for m in messages)
    assert any("1 objects rejected: off every tile" in m for m in messages)
    assert any("1 of 3 label ids are not in the catalog" in m for m in messages)
    assert any("1 tiles hold no catalog object" in m for m in messages)


def test_strict_check_refuses_label_ids_not_in_the_catalog(tmp_path, capsys):
    config = _survey(tmp_path)
    report_path = tmp_path / "check.json"
    code = entry.main(["check", "--config-json", json.dumps(config), "--report",
                       str(report_path), "--strict"])
    assert code == 2 and not report_path.exists()
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "label ids are not in the catalog" in ln]
    assert lines and "ERROR" in lines[0].upper()
    assert check.main(["--config-json", json.dumps(config), "--strict"]) == 2


def test_every_problem_is_listed_and_nothing_written(tmp_path, capsys):
    config = _survey(tmp_path)
    (tmp_path / "tiles" / "A_r.fits").unlink()                     # missing band file
    fits.PrimaryHDU(np.zeros((30, 30), np.float32)).writeto(       # HDU without a WCS
        tmp_path / "tiles" / "B_r.fits", overwrite=True)
    config["survey"]["columns"]["dec"] = "DECJ2000"                 # missing catalog column
    config["tasks"] = [{"name": "lens", "label": "LENS"}]            # missing label column
    report = tmp_path / "check.json"
    assert check.main(["--config-json", json.dumps(config), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert "A_r.fits: band 'r' of tile 'A' is missing" in err
    assert "B_r.fits: no HDU holds a 2-D image with a celestial WCS" in err
    assert "cat.fits: no column 'DECJ2000' (configured as survey.columns.dec)" in err
    assert "labels.fits: no column 'LENS' (configured as tasks[0].label)" in err
    assert "check found 4 errors" in err
    assert not report.exists()


def test_duplicate_ids_fail_the_check(tmp_path, capsys):
    config = _survey(tmp_path)
    cat = Table.read(tmp_path / "cat.fits")
    cat["OBJID"][4] = cat["OBJID"][0]
    cat.write(tmp_path / "cat.fits", overwrite=True)
    assert check.main(["--config-json", json.dumps(config), "--report",
                       str(tmp_path / "r.json")]) == 2
    assert "2 rows share an id, e.g. 2305843009213693952 (row 0), 2305843009213693952 (row 4)" \
        in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_validate(path):
    config = load(path)
    assert config["survey"]["kind"] == "files"
    assert "{tile}" in config["survey"]["tiles"] and "{band}" in config["survey"]["tiles"]
    assert config["survey"]["mask"]["kind"] != "none"


def test_examples_cover_des_hsc_and_legacy():
    assert {p.stem for p in EXAMPLES} >= {"des", "hsc", "legacy"}
    assert "check" in entry.STEPS


def test_check_writes_the_header_summary_the_index_reads(tmp_path, monkeypatch):
    from skysift.survey import index
    config = _survey(tmp_path)
    summary = tmp_path / "tile_headers.json"
    assert check.main(["--config-json", json.dumps(config), "--report",
                       str(tmp_path / "check.json"), "--headers", str(summary)]) == 0
    tiles = json.loads(summary.read_text())["tiles"]
    assert [t["tile"] for t in tiles] == ["A", "B"] and all(t["wcs"] for t in tiles)
    assert tiles[1]["psf_fwhm_arcsec"] == [None, None]  # no PSF_FWHM key: NaN, as null
    assert index.main(["--config-json", json.dumps(config), "--out-dir",
                       str(tmp_path / "read")]) == 0

    def no_reading(*args):
        raise AssertionError("the index read a header the check had read")
    monkeypatch.setattr(index, "read_tile_header", no_reading)
    assert index.main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "sum"),
                       "--headers", str(summary)]) == 0
    for name in ("assignment.fits", "rejects.ecsv"):
        a, b = Table.read(tmp_path / "read" / name), Table.read(tmp_path / "sum" / name)
        assert all(np.array_equal(a[c], b[c]) for c in a.colnames)
    a, b = (json.loads((tmp_path / d / "tiles.json").read_text())["tiles"]
            for d in ("read", "sum"))
    assert a == b


def test_known_lens_table_is_checked(tmp_path, capsys):
    config = _survey(tmp_path)
    Table({"RA": ["10:00:00"], "DEC": [1.0], "name": ["x"]}).write(tmp_path / "known.csv")
    config["survey"].update(known_lenses=str(tmp_path / "known.csv"),
                            known_lenses_columns={"ra": "RA", "dec": "DEC"})
    assert check.main(["--config-json", json.dumps(config)]) == 2
    assert "known.csv: columns RA/DEC (survey.known_lenses_columns.ra/dec) must hold degrees" \
        in capsys.readouterr().err
    Table({"RA": [10.0, np.nan], "DEC": [1.0, 0.0], "name": ["x", "y"]}).write(
        tmp_path / "known.csv", overwrite=True)
    report, problems = check.run_checks(load(None, json.dumps(config)))
    assert report["known_lenses"] == {"n_rows": 2, "n_bad_position": 1}
    assert any("1 known lenses have unusable coordinates" in p["message"]
               for p in problems.items)
