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
    assert report["labels"] == {"n_rows": 3, "n_in_catalog": 2, "tasks": {
        "lens": {"n_positive": 1, "n_negative": 2, "n_unlabelled": 0},
        "merger": {"n_positive": 1, "n_negative": 2, "n_unlabelled": 0}}}
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
    labels = Table.read(tmp_path / "labels.fits")
    labels["is_merger"] = [1, -1, 2]                                # label values not 0/1
    labels.write(tmp_path / "labels.fits", overwrite=True)
    config["tasks"] = [{"name": "lens", "label": "LENS"},            # missing label column
                       {"name": "merger", "label": "is_merger"}]
    report = tmp_path / "check.json"
    assert check.main(["--config-json", json.dumps(config), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert "B_r.fits: no HDU holds a 2-D image with a celestial WCS" in err
    assert "cat.fits: no column 'DECJ2000' (configured as survey.columns.dec)" in err
    assert "labels.fits: no column 'LENS' (configured as tasks[0].label)" in err
    assert ("labels.fits: column 'is_merger' (tasks[1].label) must hold only 0 or 1 (empty or "
            "NaN for unknown); 2 rows hold other values, e.g. [-1, 2]: set them to 0, 1 or "
            "empty") in err
    # a missing band file rejects the tile's objects: listed, an error only when strict
    missing = [ln for ln in err.splitlines() if "A_r.fits: band 'r' of tile 'A' is missing" in ln]
    assert len(missing) == 1 and "WARNING" in missing[0] and "missing_band:r" in missing[0]
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


def _cd_header(wcs):
    """The header of ``wcs`` as many survey tiles write it: a CD matrix plus CDELTi."""
    header = fits.Header()
    for i in (1, 2):
        header[f"CTYPE{i}"] = wcs.wcs.ctype[i - 1]
        header[f"CRVAL{i}"] = wcs.wcs.crval[i - 1]
        header[f"CRPIX{i}"] = wcs.wcs.crpix[i - 1]
    cd = wcs.wcs.get_pc() * wcs.wcs.get_cdelt()[:, None]
    for i in (1, 2):
        for j in (1, 2):
            header[f"CD{i}_{j}"] = cd[i - 1, j - 1]
    header["CDELT1"], header["CDELT2"] = cd[0, 0], cd[1, 1]
    header["PSF_FWHM"], header["MAGZP"] = 1.0, 30.0
    return header


def test_cd_and_cdelt_in_every_header_are_said_once(tmp_path, capsys):
    """astropy warns "cdelt will be ignored since cd is present" for each such tile; the
    check (and the index and cutouts after it) say it in one line for all tiles."""
    import warnings

    from skysift.stamps import cutouts
    from skysift.survey import index
    shape, names = (30, 30), ["T0", "T1", "T2", "T3"]
    for k, name in enumerate(names):
        header = _cd_header(make_wcs(10.0 + k * 0.01, 0.0, shape))
        for band in BANDS:
            path = tmp_path / "tiles" / f"{name}_{band}.fits"
            path.parent.mkdir(exist_ok=True)
            fits.PrimaryHDU(np.ones(shape, np.float32), header=header).writeto(path)
    sky = make_wcs(10.0, 0.0, shape).pixel_to_world_values([10.0], [12.0])
    Table({"OBJID": [1], "RA": sky[0], "DEC": sky[1]}).write(tmp_path / "cat.fits")
    config = {"survey": {"kind": "files", "tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"),
                         "bands": BANDS, "catalog": str(tmp_path / "cat.fits"),
                         "columns": {"id": "OBJID", "ra": "RA", "dec": "DEC"}, "labels": None,
                         "known_lenses": None}}
    text, summary = json.dumps(config), str(tmp_path / "tile_headers.json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, not once per code location
        assert check.main(["--config-json", text, "--report", str(tmp_path / "check.json"),
                           "--headers", summary]) == 0
        assert index.main(["--config-json", text, "--out-dir", str(tmp_path / "index"),
                           "--headers", summary]) == 0
        assert cutouts.main(["--config-json", text, "--shard", "s0000", "--index-dir",
                             str(tmp_path / "index"), "--out", str(tmp_path / "c.h5")]) == 0
    assert [str(w.message) for w in caught] == []
    err = capsys.readouterr().err
    assert "cdelt will be ignored" not in err.lower()
    lines = [ln for ln in err.splitlines() if "CDELT" in ln]
    assert len(lines) == 1 and "4 of 4 tiles (e.g. T0) have both CDi_j and CDELTi" in lines[0]
    assert "headers of 4 of 4 tiles from" in err  # the summary held every CD tile exactly


@pytest.mark.parametrize("values,shown", [([1, -1, 0], "1 rows hold other values, e.g. [-1]"),
                                          ([2, 0, 2], "2 rows hold other values, e.g. [2]"),
                                          (["1", "yes", "0"], "1 rows hold values such as "
                                                              "['yes']")])
def test_check_lists_label_values_the_training_set_would_refuse(tmp_path, capsys, values,
                                                                shown):
    config = _survey(tmp_path)
    labels = Table.read(tmp_path / "labels.fits")
    labels["is_lens"] = values
    labels.write(tmp_path / "labels.csv")  # CSV: "yes" makes the whole column text
    config["survey"]["labels"] = str(tmp_path / "labels.csv")
    config["survey"]["columns"]["ra"] = "RA_J2000"  # and another problem, listed with it
    report = tmp_path / "check.json"
    assert check.main(["--config-json", json.dumps(config), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "column 'is_lens' (tasks[0].label)" in ln]
    assert len(line) == 1 and "labels.csv" in line[0] and shown in line[0], err
    assert "0 or 1" in line[0] and "empty" in line[0]  # the allowed values and the fix
    assert "no column 'RA_J2000'" in err and "check found 2 errors" in err
    assert not report.exists()


def test_empty_or_nan_labels_are_unknown_and_counted(tmp_path):
    config = _survey(tmp_path)
    Table({"OBJID": 2**61 + np.arange(4), "is_lens": [1.0, np.nan, 0.0, np.nan],
           "is_merger": np.ma.array([0, 1, 0, 0], mask=[0, 0, 1, 0])}).write(
        tmp_path / "labels.fits", overwrite=True)
    report, problems = check.run_checks(load(None, json.dumps(config)))
    assert problems.errors == []
    assert report["labels"]["tasks"] == {
        "lens": {"n_positive": 1, "n_negative": 1, "n_unlabelled": 2},
        "merger": {"n_positive": 1, "n_negative": 2, "n_unlabelled": 1}}
