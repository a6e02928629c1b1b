"""Tests of skysift.survey.index: assignment (overlaps, RA wrap, any WCS), rejects, shards,
the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from survey_helpers import BANDS, make_wcs, write_band, write_tile

from skysift.config import validate
from skysift.errors import DataError
from skysift.survey import index as index_mod
from skysift.survey import index as survey
from skysift.survey.footprints import (
    REASON_DEC,
    REASON_NONFINITE,
    REASON_OFF,
    assign_objects,
    assign_to_complete,
)
from skysift.survey.headers import wcs_from_json, wcs_to_json, write_header_summary
from skysift.survey.index import build_index, load_headers, main
from skysift.survey.shards import make_shards, plan_training_shards, read_assignment_rows

# --------------------------------------------------------------------------- assignment


def test_overlap_goes_to_tile_farthest_from_edge():
    shape = (100, 100)  # 0.5"/pix: 50" wide tiles
    a = make_wcs(10.0, 0.0, shape, rot_deg=20)
    b = make_wcs(10.0 - 30 / 3600, 0.0, shape)  # centre 60 pixels west of a's
    sky = SkyCoord([a.pixel_to_world(49.5, 50.0), b.pixel_to_world(49.5, 50.0),
                    b.pixel_to_world(-0.3, 50.0)])
    tile_idx, x, y, reason = assign_objects(sky.ra.deg, sky.dec.deg, [(a, shape), (b, shape)])
    assert tile_idx.tolist() == [0, 1, 0]
    assert (reason == "").all()
    np.testing.assert_allclose(x[:2], 49.5, atol=1e-6)
    np.testing.assert_allclose(y[:2], 50.0, atol=1e-6)
    tiles = [(b, shape), (a, shape), (a, shape)]  # identical tiles tie: the first one wins
    tile_idx, *_ = assign_objects(sky.ra.deg[:1], sky.dec.deg[:1], tiles)
    assert tile_idx.tolist() == [1]


def test_rejects_carry_a_reason():
    shape = (50, 50)
    w = make_wcs(10.0, 0.0, shape)
    corner = w.pixel_to_world(-0.4999, -0.4999)  # first pixel's lower-left corner: inside
    ra = np.array([10.0, 12.0, np.nan, 10.0, 190.0, corner.ra.deg, 10.0])
    dec = np.array([0.0, 0.0, 0.0, 91.0, 0.0, corner.dec.deg, np.inf])
    tile_idx, x, y, reason = assign_objects(ra, dec, [(w, shape)])
    assert tile_idx.tolist() == [0, -1, -1, -1, -1, 0, -1]
    assert reason.tolist() == ["", REASON_OFF, REASON_NONFINITE, REASON_DEC, REASON_OFF, "",
                               REASON_NONFINITE]
    assert np.isnan(x[1:5]).all() and x[5] >= -0.5


def test_tile_straddling_ra_zero():
    shape = (200, 200)  # 1"/pix: +-0.028 deg around RA 0
    w = make_wcs(0.0, 0.0, shape, pixscale_arcsec=1.0, rot_deg=5)
    ra = np.array([359.99, 0.01, -0.01, 360.01, 359.9, 0.1])
    tile_idx, x, _, reason = assign_objects(ra, np.zeros(6), [(w, shape)])
    assert tile_idx.tolist() == [0, 0, 0, 0, -1, -1]
    assert x[0] > 99.5 > x[1]  # east (larger RA) is to the left
    np.testing.assert_allclose(x[2], x[0], atol=1e-6)  # -0.01 wraps to 359.99
    np.testing.assert_allclose(x[3], x[1], atol=1e-6)
    assert reason[4] == REASON_OFF


@pytest.mark.parametrize("ctype", [("DEC--TAN", "RA---TAN"), ("GLON-TAN", "GLAT-TAN")])
def test_assignment_follows_the_wcs_frame_and_axis_order(ctype):
    shape = (60, 80)
    w = make_wcs(30.0, 40.0, shape, rot_deg=15, ctype=ctype)
    sky = w.pixel_to_world([3.2, 70.7, 40.0], [5.1, 55.4, -9.0]).icrs
    tile_idx, x, y, _ = assign_objects(sky.ra.deg, sky.dec.deg, [(w, shape)])
    assert tile_idx.tolist() == [0, 0, -1]
    np.testing.assert_allclose(x[:2], [3.2, 70.7], atol=1e-5)
    np.testing.assert_allclose(y[:2], [5.1, 55.4], atol=1e-5)


def test_sip_distortion_is_applied():
    shape = (80, 90)
    w = make_wcs(150.0, 2.0, shape, rot_deg=-12, sip=True)
    xy = np.array([[2.0, 3.0], [85.4, 76.2], [45.0, 40.0]])
    ra, dec = w.all_pix2world(xy[:, 0], xy[:, 1], 0)
    linear = np.column_stack(w.wcs_world2pix(ra, dec, 0))  # what ignoring SIP would give
    assert np.abs(linear - xy).max() > 2.0  # the test WCS is distorted for real
    tile_idx, x, y, _ = assign_objects(ra, dec, [(w, shape)])
    assert tile_idx.tolist() == [0, 0, 0]
    np.testing.assert_allclose(np.column_stack([x, y]), xy, atol=1e-4)


# --------------------------------------------------------------------------- shards


def test_shards_skip_empty_tiles_and_know_their_rows():
    tiles = ["a", "b", "c", "d", "e"]
    shards = make_shards(tiles, [3, 0, 2, 4, 1], 2)
    assert [s["shard"] for s in shards] == ["s0000", "s0001"]
    assert [s["tiles"] for s in shards] == [["a", "c"], ["d", "e"]]
    assert [s["rows"] for s in shards] == [[0, 5], [5, 10]]
    assert [s["n_objects"] for s in shards] == [5, 5]
    many = make_shards([f"t{i}" for i in range(20001)], [1] * 20001, 1)
    assert len(many) == 20001 and many[-1]["shard"] == "s20000"
    assert [many[i]["shard"] for i in (0, 9999, 10000)] == ["s0000", "s9999", "s10000"]


# --------------------------------------------------------------------------- CLI


def _survey(tmp_path, ids, **columns):
    shape = (40, 40)
    wcs_a, wcs_b, wcs_c = (make_wcs(0.0, 0.0, shape), make_wcs(0.01, 0.0, shape),
                           make_wcs(5.0, 0.0, shape))
    for name, wcs in (("A", wcs_a), ("B", wcs_b), ("C", wcs_c)):
        write_tile(tmp_path, name, wcs, shape)
    sky = SkyCoord([wcs_b.pixel_to_world(20.0, 20.0), wcs_a.pixel_to_world(10.0, 12.0),
                    wcs_a.pixel_to_world(5.0, 30.0)])
    ra = np.concatenate([sky.ra.deg, [np.nan, 180.0]])
    dec = np.concatenate([sky.dec.deg, [0.0, 0.0]])
    names = {"id": "objid", "ra": "ra", "dec": "dec", **columns}
    Table({names["id"]: ids, names["ra"]: ra, names["dec"]: dec}).write(tmp_path / "cat.ecsv")
    return {"survey": {"tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"), "bands": BANDS,
                       "catalog": str(tmp_path / "cat.ecsv"), "columns": names},
            "index": {"tiles_per_shard": 1}}


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_index_cli_writes_formats(tmp_path, id_kind):
    ids = (2**60 + np.array([7, 1, 3, 9, 5])) if id_kind == "int" else \
        np.array(["g-7", "g-1", "ü-3", "g-9", "g-5"])
    config = _survey(tmp_path, ids, id="oid", ra="RAJ2000", dec="DEJ2000")
    out = tmp_path / "index"
    assert main(["--config-json", json.dumps(config), "--out-dir", str(out)]) == 0

    info = json.loads((out / "tiles.json").read_text())
    assert [t["tile"] for t in info["tiles"]] == ["A", "B", "C"]
    assert [t["n_objects"] for t in info["tiles"]] == [2, 1, 0]
    assert [t["shard"] for t in info["tiles"]] == ["s0000", "s0001", None]
    assert (info["n_catalog"], info["n_assigned"], info["n_rejected"]) == (5, 3, 2)
    assert info["bands"] == BANDS and info["tiles"][0]["shape"] == [40, 40]
    corners = np.array(info["tiles"][1]["footprint_radec"])
    assert corners.shape == (4, 2) and abs(corners[:, 0].mean() - 0.01) < 1e-3

    table = Table.read(out / "assignment.fits")
    assert table["index"].tolist() == [1, 2, 0]  # sorted by (tile, index)
    assert np.asarray(table["tile"]).astype(str).tolist() == ["A", "A", "B"]
    got = np.asarray(table["id"])
    if id_kind == "int":
        assert got.dtype.newbyteorder("=") == np.int64
        assert got.tolist() == [int(ids[i]) for i in (1, 2, 0)]
    else:
        assert [v.decode() for v in got] == [ids[i] for i in (1, 2, 0)]
    np.testing.assert_allclose(table["x_pix"], [10.0, 5.0, 20.0], atol=1e-6)
    np.testing.assert_allclose(table["y_pix"], [12.0, 30.0, 20.0], atol=1e-6)

    rejects = Table.read(out / "rejects.ecsv")
    assert rejects["index"].tolist() == [3, 4]
    assert rejects["reason"].tolist() == [REASON_NONFINITE, REASON_OFF]
    assert [str(v) if id_kind == "str" else int(v) for v in rejects["id"]] == \
        [ids[3].item(), ids[4].item()]

    shards = json.loads((out / "shards.json").read_text())
    assert [(s["shard"], s["tiles"], s["rows"]) for s in shards["shards"]] == \
        [("s0000", ["A"], [0, 2]), ("s0001", ["B"], [2, 3])]
    rows = read_assignment_rows(out, shard="s0001")
    assert rows["index"].tolist() == [0] and rows["tile"].tolist() == ["B"]
    assert read_assignment_rows(out, tile="A")["index"].tolist() == [1, 2]
    assert main(["--config-json", json.dumps(config), "--out-dir", str(out)]) == 0
    assert json.loads((out / "shards.json").read_text())["n_kept"] == 2  # ids read back exact


def test_duplicate_ids_exit_2_without_output(tmp_path, capsys):
    config = _survey(tmp_path, np.array([4, 8, 15, 8, 23]))
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o")]) == 2
    assert "cat.ecsv: column 'objid' (survey.columns.id): 2 rows share an id, e.g. 8 (row 1), " \
        "8 (row 3)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_strict_makes_bad_coordinates_and_objects_off_every_tile_fatal(tmp_path, capsys):
    config = json.dumps(_survey(tmp_path, np.arange(5)))
    assert main(["--config-json", config, "--out-dir", str(tmp_path / "o"), "--strict"]) == 2
    assert "2 rows cannot be cut (1 non-finite coordinates, 1 off every tile; e.g. row 3: " \
        "non-finite coordinates)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert survey.main(["--config-json", config, "--out-dir", str(tmp_path / "o")]) == 0


def test_no_object_on_any_tile_is_an_error(tmp_path, capsys):
    write_tile(tmp_path, "A", make_wcs(0.0, 0.0, (8, 8)), (8, 8))
    Table({"objid": [1, 2], "ra": [90.0, 91.0], "dec": [0.0, 0.0]}).write(tmp_path / "cat.fits")
    config = {"survey": {"tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"),
                         "bands": BANDS, "catalog": str(tmp_path / "cat.fits")}}
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o")]) == 2
    assert "none of its 2 objects lies on any of the 1 tiles" in capsys.readouterr().err


def test_index_cli_without_tiles_names_the_pattern(tmp_path, capsys):
    pattern = str(tmp_path / "nowhere" / "{tile}_{band}.fits")
    config = {"survey": {"tiles": pattern, "catalog": str(tmp_path / "cat.fits")}}
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o")]) == 2
    assert pattern in capsys.readouterr().err


@pytest.mark.parametrize("problem", ["missing_band", "no_wcs"])
def test_bad_tile_exit_2_without_output(tmp_path, capsys, problem):
    config = _survey(tmp_path, np.arange(5))
    bad = tmp_path / "tiles" / "B_r.fits"
    bad.unlink()
    if problem == "no_wcs":
        fits.PrimaryHDU(np.zeros((40, 40), np.float32)).writeto(bad)
    strict = ["--strict"] if problem == "missing_band" else []  # else its objects are rejects
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o"),
                 *strict]) == 2
    err = capsys.readouterr().err
    assert "B_r.fits: " in err
    assert ("celestial WCS" if problem == "no_wcs" else "band 'r' of tile 'B' is missing") in err
    assert not (tmp_path / "o").exists()


def test_missing_band_file_rejects_the_tiles_objects_unless_strict(tmp_path, capsys):
    """Tile B lacks its r file: its object is a counted reject (missing_band:r), listed in
    the index's and the merged rejects; the rest of the survey is indexed; fatal when strict."""
    from skysift.survey import check
    from skysift.survey import rejects as merge
    ids = 2**60 + np.array([7, 1, 3, 9, 5])
    config = _survey(tmp_path, ids)
    config["survey"].update(kind="files", labels=None, known_lenses=None)
    (tmp_path / "tiles" / "B_r.fits").unlink()
    text, out = json.dumps(config), tmp_path / "index"
    summary = tmp_path / "tile_headers.json"
    assert check.main(["--config-json", text, "--report", str(tmp_path / "check.json"),
                       "--headers", str(summary)]) == 0
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["rejects"] == {"missing_band:r": 1, REASON_NONFINITE: 1, REASON_OFF: 1}
    assert [(t["tile"], t["n_objects"], t["missing_bands"]) for t in report["tiles"]] == \
        [("A", 2, []), ("B", 0, ["r"]), ("C", 0, [])]
    assert main(["--config-json", text, "--out-dir", str(out), "--headers", str(summary)]) == 0
    assert "headers of 3 of 3 tiles from" in capsys.readouterr().err  # B's g band included
    rejects = Table.read(out / "rejects.ecsv")
    assert rejects["index"].tolist() == [0, 3, 4]
    assert rejects["reason"].tolist() == ["missing_band:r", REASON_NONFINITE, REASON_OFF]
    assignment = Table.read(out / "assignment.fits")
    assert assignment["index"].tolist() == [1, 2]
    assert sorted(assignment["id"].tolist() + rejects["id"].tolist()) == sorted(ids.tolist())
    info = json.loads((out / "tiles.json").read_text())
    assert [(t["tile"], t["n_objects"], t["shard"], t["missing_bands"])
            for t in info["tiles"]] == [("A", 2, "s0000", []), ("B", 0, None, ["r"]),
                                        ("C", 0, None, [])]
    merged = tmp_path / "rejects.ecsv"
    assert merge.main(["--index-dir", str(out), "--out", str(merged)]) == 0
    assert Table.read(merged)["reason"].tolist()[0] == "missing_band:r"
    for step in (main, check.main):  # strict: an error naming the file, nothing written
        argv = ["--config-json", text, "--strict"]
        argv += ["--out-dir", str(tmp_path / "o")] if step is main else []
        assert step(argv) == 2
        err = capsys.readouterr().err
        named = [ln for ln in err.splitlines() if "B_r.fits: band 'r' of tile 'B' is missing" in ln
                 and ("skysift: error:" in ln or " ERROR: " in ln)]  # index: one error; check
        assert named, err                                             # lists it as an error
    assert not (tmp_path / "o").exists()
    write_band(tmp_path / "tiles" / "B_r.fits", np.zeros((40, 40)),  # the file comes back
               make_wcs(0.01, 0.0, (40, 40)))
    assert [h.bands for h in load_headers(validate(config), summary)] == [BANDS] * 3


def test_objects_on_a_complete_tile_stay_when_an_overlapping_one_lacks_a_band():
    shape = (100, 100)
    a = make_wcs(10.0, 0.0, shape)
    b = make_wcs(10.0 - 30 / 3600, 0.0, shape)  # overlaps a's west half
    sky = SkyCoord([a.pixel_to_world(49.5, 50.0), b.pixel_to_world(30.0, 50.0),
                    b.pixel_to_world(49.5, 50.0), a.pixel_to_world(400.0, 50.0)])
    tiles = [(a, shape), (b, shape)]
    assert assign_objects(sky.ra.deg, sky.dec.deg, tiles)[0].tolist() == [0, 1, 1, -1]
    tile_idx, x, _, reason = assign_to_complete(sky.ra.deg, sky.dec.deg, tiles, [[], ["g", "r"]])
    assert tile_idx.tolist() == [0, 0, -1, -1]  # the overlap goes to a, complete
    assert reason.tolist() == ["", "", "missing_band:g,r", REASON_OFF]
    assert np.isfinite(x[:2]).all() and np.isnan(x[2:]).all()
    tile_idx, _, _, reason = assign_to_complete(sky.ra.deg, sky.dec.deg, tiles, [["r"], []])
    assert tile_idx.tolist() == [-1, 1, 1, -1]
    assert reason.tolist() == ["missing_band:r", "", "", REASON_OFF]


# --------------------------------------------------------------------------- header summary


@pytest.mark.parametrize("kind", ["cd", "pc", "sip", "galactic"])
def test_wcs_summary_round_trips_bit_for_bit(kind):
    shape = (300, 250)
    if kind == "cd":
        w = make_wcs(35.123456789123456, -5.987654321987654, shape, 0.263, rot_deg=1.2345678)
    elif kind == "pc":
        w = make_wcs(359.9999, 12.3, shape, 0.2, rot_deg=-7.7)
        h = w.to_header()  # PC + CDELT
        h["PC1_2"] = h["PC1_2"] * (1 + 1e-12)
        w = WCS(h)
    elif kind == "sip":
        w = make_wcs(150.0, 2.0, shape, rot_deg=-12, sip=True)
    else:
        w = make_wcs(120.0, -30.0, shape, rot_deg=15, ctype=("GLON-TAN", "GLAT-TAN"))
    params = json.loads(json.dumps(wcs_to_json(w, shape)))  # through JSON text
    assert params is not None
    back = wcs_from_json(params, shape)
    x, y = np.meshgrid(np.linspace(-0.5, 249.5, 7), np.linspace(-0.5, 299.5, 9))
    for a, b in zip(w.all_pix2world(x, y, 0), back.all_pix2world(x, y, 0), strict=True):
        assert np.array_equal(a, b)  # exact, not close
    assert back.pixel_shape == (250, 300)


def _summary_survey(tmp_path):
    """Overlapping rotated, SIP and plain tiles plus a catalog spread over all of them."""
    shape = (60, 70)
    wcss = {"A": make_wcs(20.0, 1.0, shape, rot_deg=20),
            "B": make_wcs(20.0 + 25 / 3600, 1.0, shape, sip=True, rot_deg=-5),
            "C": make_wcs(20.0, 1.0 + 25 / 3600, shape)}
    for name, w in wcss.items():
        write_tile(tmp_path, name, w, shape)
    rng = np.random.default_rng(3)
    ra = 20.0 + rng.uniform(-40, 70, 400) / 3600
    dec = 1.0 + rng.uniform(-40, 70, 400) / 3600
    Table({"objid": np.arange(400) * 3 + 2**55, "ra": ra, "dec": dec}).write(tmp_path / "cat.fits")
    return validate({"survey": {"kind": "files", "bands": BANDS, "labels": None,
                                "tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"),
                                "catalog": str(tmp_path / "cat.fits")},
                     "index": {"tiles_per_shard": 2}})


def test_index_from_the_check_summary_equals_index_from_headers(tmp_path, monkeypatch):
    config = _summary_survey(tmp_path)
    from_headers = build_index(config, load_headers(config))
    summary = tmp_path / "tile_headers.json"
    assert write_header_summary(summary, from_headers.headers, config) == 3

    def no_reading(*args):
        raise AssertionError("a header was read although the summary holds it")
    monkeypatch.setattr(index_mod, "read_tile_header", no_reading)
    from_summary = build_index(config, load_headers(config, summary))
    assert 0 < len(from_summary.assignment) < 400 and len(from_summary.rejects) > 0
    for col in from_headers.assignment.colnames:
        assert np.array_equal(from_summary.assignment[col], from_headers.assignment[col]), col
    assert from_summary.shards == from_headers.shards
    assert np.array_equal(from_summary.rejects["index"], from_headers.rejects["index"])
    for a, b in zip(from_summary.headers, from_headers.headers, strict=True):
        assert (a.tile, a.paths, a.shape, a.pixscale_arcsec, a.psf_fwhm_arcsec, a.zeropoint) == \
            (b.tile, b.paths, b.shape, b.pixscale_arcsec, b.psf_fwhm_arcsec, b.zeropoint)


def test_summary_of_other_settings_or_missing_tiles_falls_back_to_headers(tmp_path, caplog):
    config = _summary_survey(tmp_path)
    summary = tmp_path / "tile_headers.json"
    headers = load_headers(config)
    write_header_summary(summary, headers[:2], config)  # tile C is missing from it
    got = load_headers(config, summary)
    assert [h.tile for h in got] == ["A", "B", "C"]
    other = validate({**config, "survey": {**config["survey"], "psf_fwhm_key": "SEEING"}})
    assert all(np.isnan(load_headers(other, summary)[0].psf_fwhm_arcsec))
    assert "written for other survey settings" in caplog.text
    out = tmp_path / "index"
    assert main(["--config-json", json.dumps(config), "--out-dir", str(out),
                 "--headers", str(tmp_path / "nothing.json")]) == 0
    assert (out / "shards.json").exists()


# --------------------------------------------------------------------------- stable shards


def _grid_survey(tmp_path, names):
    """Tiles of 40x40 px (20") at 0.5"/px on an East-West row 15" apart (5" overlap)."""
    shape = (40, 40)
    wcss = {}
    for name in names:
        k = "ABCDEFGH".index(name)
        wcss[name] = make_wcs(10.0 + k * 15 / 3600, 0.0, shape)
        write_tile(tmp_path, name, wcss[name], shape)
    return wcss


def _catalog(tmp_path):
    """One object at the centre of each of tiles A-F, and one 8" east of E's centre: 2"
    inside E's east edge, 3" inside F's west edge."""
    ra = [10.0 + k * 15 / 3600 for k in range(6)] + [10.0 + 4 * 15 / 3600 + 8 / 3600]
    Table({"objid": np.arange(7) + 2**60, "ra": ra, "dec": np.zeros(7)}).write(
        tmp_path / "cat.fits", overwrite=True)


def _index(tmp_path, keep=True, out="index"):
    config = {"survey": {"kind": "files", "bands": BANDS, "labels": None,
                         "tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"),
                         "catalog": str(tmp_path / "cat.fits")},
              "index": {"tiles_per_shard": 2, "keep_shards": keep}}
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / out)]) == 0
    return json.loads((tmp_path / out / "shards.json").read_text())


def test_adding_tiles_keeps_every_existing_shard_and_its_file(tmp_path):
    _catalog(tmp_path)
    _grid_survey(tmp_path, "ABCDE")
    first = _index(tmp_path)
    assert [(s["shard"], s["tiles"]) for s in first["shards"]] == \
        [("s0000", ["A", "B"]), ("s0001", ["C", "D"]), ("s0002", ["E"])]
    files = {s["shard"]: tmp_path / "index" / "shards" / f"{s['shard']}.fits"
             for s in first["shards"]}
    before = {k: (p.stat().st_mtime_ns, p.read_bytes()) for k, p in files.items()}
    rows_before = {k: read_assignment_rows(tmp_path / "index", shard=k) for k in files}
    # object 6 is in E only, until F comes
    assert rows_before["s0002"]["index"].tolist() == [4, 6]

    _grid_survey(tmp_path, "FG")  # two new tiles: F overlaps E and is closer to object 6
    second = _index(tmp_path)
    assert second["n_kept"] == 3
    assert [(s["shard"], s["tiles"]) for s in second["shards"]] == \
        [("s0000", ["A", "B"]), ("s0001", ["C", "D"]), ("s0002", ["E"]), ("s0003", ["F"])]
    for k, p in files.items():  # untouched: same bytes, same mtime
        assert (p.stat().st_mtime_ns, p.read_bytes()) == before[k]
        after = read_assignment_rows(tmp_path / "index", shard=k)
        assert all(np.array_equal(after[c], rows_before[k][c]) for c in after)
    assert read_assignment_rows(tmp_path / "index", shard="s0003")["index"].tolist() == [5]

    scratch = _index(tmp_path, keep=False, out="scratch")  # the trade-off, documented
    assert [(s["shard"], s["tiles"]) for s in scratch["shards"]] == \
        [("s0000", ["A", "B"]), ("s0001", ["C", "D"]), ("s0002", ["E", "F"])]
    assert read_assignment_rows(tmp_path / "scratch", tile="F")["index"].tolist() == [5, 6]


def test_changed_objects_rebuild_only_their_shard(tmp_path):
    _catalog(tmp_path)
    _grid_survey(tmp_path, "ABCD")
    _index(tmp_path)
    cat = Table.read(tmp_path / "cat.fits")
    cat["ra"][2] += 1 / 3600  # object of tile C moves by 1": shard s0001 changes
    cat.write(tmp_path / "cat.fits", overwrite=True)
    old = (tmp_path / "index" / "shards" / "s0000.fits").stat().st_mtime_ns
    shards = _index(tmp_path)
    assert [(s["shard"], s["tiles"]) for s in shards["shards"]] == \
        [("s0000", ["A", "B"]), ("s0002", ["C", "D"])]
    assert (tmp_path / "index" / "shards" / "s0000.fits").stat().st_mtime_ns == old
    assert not (tmp_path / "index" / "shards" / "s0001.fits").exists()
    x = read_assignment_rows(tmp_path / "index", shard="s0002")["x_pix"]
    assert x[0] == pytest.approx(19.5 - 2.0, abs=1e-6)  # 1" east = 2 px to the left


def test_shard_file_out_of_step_with_shards_json_is_an_error(tmp_path):
    _catalog(tmp_path)
    _grid_survey(tmp_path, "AB")
    _index(tmp_path)
    shards = json.loads((tmp_path / "index" / "shards.json").read_text())
    shards["shards"][0]["digest"] = "0" * 64
    (tmp_path / "index" / "shards.json").write_text(json.dumps(shards))
    with pytest.raises(DataError, match="does not match"):
        read_assignment_rows(tmp_path / "index", shard="s0000")


# --------------------------------------------------------------------------- training shards


def _training(tmp_path, out="index"):
    path = tmp_path / out / "training_shards.json"
    return json.loads(path.read_text()), path.stat().st_mtime_ns, path.read_bytes()


def test_training_shards_are_kept_while_tiles_are_added(tmp_path):
    _catalog(tmp_path)
    _grid_survey(tmp_path, "ABCDE")
    first = _index(tmp_path)
    record, mtime, data = _training(tmp_path)
    assert record["shards"] == ["s0000", "s0001", "s0002"]
    assert record["digests"] == {s["shard"]: s["digest"] for s in first["shards"]}
    assert record["n_objects"] == 6
    assert record["provenance"]["config_hash"]

    _grid_survey(tmp_path, "FG")  # a new shard s0003: training keeps the first run's shards
    assert len(_index(tmp_path)["shards"]) == 4
    assert _training(tmp_path)[1:] == (mtime, data)  # untouched: same bytes, same mtime

    _index(tmp_path, keep=False)  # from scratch, E and F share a shard: the record resets
    record, mtime2, _ = _training(tmp_path)
    assert record["shards"] == ["s0000", "s0001", "s0002"] and mtime2 != mtime
    assert record["n_objects"] == 7
    _index(tmp_path, keep=False)  # the same shards again: kept
    assert _training(tmp_path)[1] == mtime2


def test_training_shards_reset_when_a_recorded_shard_changes(tmp_path):
    _catalog(tmp_path)
    _grid_survey(tmp_path, "ABCD")
    _index(tmp_path)
    cat = Table.read(tmp_path / "cat.fits")
    cat["ra"][2] += 1 / 3600  # shard s0001 is rebuilt as s0002: training must see it
    cat.write(tmp_path / "cat.fits", overwrite=True)
    _index(tmp_path)
    assert _training(tmp_path)[0]["shards"] == ["s0000", "s0002"]
    (tmp_path / "index" / "training_shards.json").write_text("{not json")
    _index(tmp_path)  # unreadable: written again
    assert _training(tmp_path)[0]["shards"] == ["s0000", "s0002"]


@pytest.mark.parametrize("keep", [True, False])
def test_plan_training_shards(keep):
    shards = [{"shard": "s0000", "digest": "a", "n_objects": 3},
              {"shard": "s0001", "digest": "b", "n_objects": 4}]
    new, kept = plan_training_shards(None, shards, keep)
    assert not kept and new == {"shards": ["s0000", "s0001"],
                                "digests": {"s0000": "a", "s0001": "b"}, "n_objects": 7}
    grown = shards + [{"shard": "s0002", "digest": "c", "n_objects": 5}]
    record, kept = plan_training_shards({**new, "provenance": {"x": 1}}, grown, keep)
    assert kept is keep
    assert record["shards"] == (["s0000", "s0001"] if keep else ["s0000", "s0001", "s0002"])
    changed = [shards[0], {**shards[1], "digest": "B"}]
    assert plan_training_shards(new, changed, keep) == (
        {"shards": ["s0000", "s0001"], "digests": {"s0000": "a", "s0001": "B"}, "n_objects": 7},
        False)
    assert plan_training_shards(new, shards[:1], keep)[0]["shards"] == ["s0000"]
