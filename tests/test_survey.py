"""Tests of skysift.survey: tile discovery, FITS reading, object assignment, the index CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skysift.config import validate
from skysift.errors import SurveyError
from skysift.survey import (
    REASON_DEC,
    REASON_NONFINITE,
    REASON_OFF,
    TileHeader,
    assign_objects,
    discover_tiles,
    find_image_hdu,
    main,
    read_catalog,
    read_tile,
    read_tile_header,
    tile_path,
)

BANDS = ["g", "r"]


def make_wcs(ra0, dec0, shape, pixscale_arcsec=0.5, rot_deg=0.0, ctype=("RA---TAN", "DEC--TAN")):
    """A TAN WCS centred on (ra0, dec0) with a rotated CD matrix."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = list(ctype)
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    w.wcs.cd = pixscale_arcsec / 3600 * np.array([[-c, s], [s, c]])
    if ctype[0].startswith(("RA", "DEC")):
        w.wcs.radesys = "ICRS"
    return w


def write_band(path, data, wcs, extra=None, compressed=False):
    header = wcs.to_header()
    for key, value in (extra or {}).items():
        header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    if compressed:
        hdu = fits.CompImageHDU(data.astype(np.float32), header=header, quantize_level=0.0,
                                compression_type="GZIP_2")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    else:
        fits.PrimaryHDU(data.astype(">f4"), header=header).writeto(path)


def make_config(tmp_path, pattern=None, catalog=None, **survey):
    survey = {"tiles": pattern or str(tmp_path / "tiles" / "{tile}_{band}.fits"),
              "bands": BANDS, "catalog": str(catalog or tmp_path / "cat.fits"), **survey}
    return validate({"survey": survey})


def write_tile(tmp_path, tile, wcs, shape, rng=None, extra=None, compressed=False):
    rng = rng or np.random.default_rng(0)
    data = []
    ext = ".fits.fz" if compressed else ".fits"
    for band in BANDS:
        img = rng.normal(size=shape).astype(np.float32)
        write_band(tmp_path / "tiles" / f"{tile}_{band}{ext}", img, wcs,
                   extra=extra if extra is not None else {"PSF_FWHM": 1.0, "MAGZP": 30.0},
                   compressed=compressed)
        data.append(img)
    return np.stack(data)


# --------------------------------------------------------------------------- discovery

def test_discover_tiles_sorted_and_parsed(tmp_path):
    pattern = str(tmp_path / "t[1]" / "{tile}" / "{tile}_{band}.fits")
    for tile in ["b_2", "a_1", "DES0001-0002"]:
        for band in BANDS:
            path = tmp_path / "t[1]" / tile / f"{tile}_{band}.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    (tmp_path / "t[1]" / "a_1" / "a_1_g.fits.partial").touch()
    (tmp_path / "t[1]" / "a_1" / "zz_g.fits").touch()  # {tile} repeated: does not match
    assert discover_tiles(pattern, BANDS) == ["DES0001-0002", "a_1", "b_2"]
    assert tile_path(pattern, "a_1", "r").endswith("t[1]/a_1/a_1_r.fits")


def test_discover_tiles_missing_band_names_file(tmp_path):
    pattern = str(tmp_path / "{tile}_{band}.fits")
    (tmp_path / "x_g.fits").touch()
    (tmp_path / "x_r.fits").touch()
    (tmp_path / "y_r.fits").touch()  # y lacks g: found through the other band
    with pytest.raises(SurveyError, match=r"y_g\.fits.*band 'g'"):
        discover_tiles(pattern, BANDS)


def test_discover_tiles_without_band_field(tmp_path):
    with pytest.raises(SurveyError, match=r"\{band\}"):
        discover_tiles(str(tmp_path / "{tile}.fits"), BANDS)
    (tmp_path / "only.fits").touch()
    assert discover_tiles(str(tmp_path / "{tile}.fits"), ["r"]) == ["only"]


# --------------------------------------------------------------------------- reading

def test_find_image_hdu(tmp_path):
    wcs = make_wcs(10, 0, (8, 8))
    hdul = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), name="WHT"),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), wcs.to_header(), name="SCI")])
    assert find_image_hdu(hdul, None, "f.fits") == 2
    assert find_image_hdu(hdul, "sci", "f.fits") == 2
    assert find_image_hdu(hdul, 1, "f.fits") == 1
    with pytest.raises(SurveyError, match="f.fits.*NOPE"):
        find_image_hdu(hdul, "NOPE", "f.fits")
    with pytest.raises(SurveyError, match="f.fits.*survey.hdu is 7"):
        find_image_hdu(hdul, 7, "f.fits")
    with pytest.raises(SurveyError, match="f.fits: no HDU holds a 2-D image"):
        find_image_hdu(hdul[:2], None, "f.fits")


def test_read_tile_values_and_header_keys(tmp_path, caplog):
    shape = (20, 30)
    wcs = make_wcs(150.0, 2.0, shape, pixscale_arcsec=0.263, rot_deg=30)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    write_band(tmp_path / "tiles" / "t0_g.fits", data, wcs, {"PSF_FWHM": 1.1, "MAGZP": 30.5})
    write_band(tmp_path / "tiles" / "t0_r.fits", -data, wcs, {"MAGZP": 31.0})
    stack = read_tile(make_config(tmp_path), "t0")
    assert stack.images.shape == (2, 20, 30) and stack.images.dtype == np.float32
    assert stack.images.dtype.isnative
    np.testing.assert_array_equal(stack.images[0], data)
    np.testing.assert_array_equal(stack.images[1], -data)
    assert stack.shape == shape
    assert stack.pixscale_arcsec == pytest.approx(0.263, rel=1e-9)
    assert stack.psf_fwhm_arcsec[0] == pytest.approx(1.1) and math.isnan(stack.psf_fwhm_arcsec[1])
    assert stack.zeropoint == [30.5, 31.0]
    assert "PSF_FWHM" in caplog.text and "t0_r.fits" in caplog.text
    sky = wcs.pixel_to_world(3.0, 4.0)
    np.testing.assert_allclose(stack.wcs.world_to_pixel(sky), (3.0, 4.0), atol=1e-8)
    head = read_tile_header(make_config(tmp_path), "t0")
    assert isinstance(head, TileHeader) and not hasattr(head, "images")
    assert head.shape == shape and head.zeropoint == stack.zeropoint


def test_compressed_tile_reads_the_same(tmp_path):
    wcs = make_wcs(20.0, -30.0, (24, 16), rot_deg=10)
    plain = write_tile(tmp_path, "p", wcs, (24, 16), np.random.default_rng(1))
    packed = write_tile(tmp_path, "p", wcs, (24, 16), np.random.default_rng(1), compressed=True)
    np.testing.assert_array_equal(plain, packed)
    a = read_tile(make_config(tmp_path), "p")
    b = read_tile(make_config(tmp_path, str(tmp_path / "tiles" / "{tile}_{band}.fits.fz")), "p")
    np.testing.assert_array_equal(a.images, b.images)
    assert (a.shape, a.pixscale_arcsec, a.psf_fwhm_arcsec) == (b.shape, b.pixscale_arcsec,
                                                               b.psf_fwhm_arcsec)
    np.testing.assert_allclose(b.wcs.pixel_scale_matrix, a.wcs.pixel_scale_matrix)


def _bad_file(tmp_path, kind):
    wcs = make_wcs(10, 0, (16, 16))
    good = np.zeros((16, 16), np.float32)
    write_band(tmp_path / "tiles" / "t_g.fits", good, wcs)
    bad = tmp_path / "tiles" / "t_r.fits"
    if kind == "missing":
        return "t_r.fits: tile file not found"
    if kind == "text":
        bad.write_text("not a fits file\n")
        return "t_r.fits: not a readable FITS file"
    if kind == "truncated":
        write_band(bad, np.zeros((64, 64), np.float32), wcs)
        bad.write_bytes(bad.read_bytes()[:2880 * 3])
        return "t_r.fits: FITS file is truncated"
    if kind == "no_wcs":
        fits.PrimaryHDU(good).writeto(bad)
        return "t_r.fits: .*celestial WCS.*set survey.hdu"
    if kind == "shape":
        write_band(bad, np.zeros((16, 17), np.float32), wcs)
        return r"t_r.fits: image shape \(16, 17\) differs"
    if kind == "misaligned":
        write_band(bad, good, make_wcs(10.001, 0, (16, 16)))
        return "t_r.fits: pixel grid differs"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "no_wcs", "shape", "misaligned"])
def test_read_tile_errors_name_the_file(tmp_path, kind):
    message = _bad_file(tmp_path, kind)
    with pytest.raises(SurveyError, match=message):
        read_tile(make_config(tmp_path), "t")


def test_read_catalog_checks_columns(tmp_path):
    Table({"objid": [1, 2], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}).write(tmp_path / "cat.fits")
    assert len(read_catalog(make_config(tmp_path))) == 2
    config = make_config(tmp_path, columns={"id": "ID", "ra": "ra", "dec": "dec"})
    with pytest.raises(SurveyError, match=r"cat.fits: no column 'ID' .*survey.columns.id"):
        read_catalog(config)
    Table({"objid": [], "ra": [], "dec": []}).write(tmp_path / "empty.csv")
    with pytest.raises(SurveyError, match="empty.csv: the catalog has no rows"):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "empty.csv"))


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
    # identical tiles tie: the first one wins
    tiles = [(b, shape), (a, shape), (a, shape)]
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


# --------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_index_cli_writes_formats(tmp_path, id_kind):
    shape = (40, 40)
    wcs_a, wcs_b = make_wcs(0.0, 0.0, shape), make_wcs(0.01, 0.0, shape)
    write_tile(tmp_path, "A", wcs_a, shape)
    write_tile(tmp_path, "B", wcs_b, shape)
    sky = SkyCoord([wcs_b.pixel_to_world(20.0, 20.0), wcs_a.pixel_to_world(10.0, 12.0),
                    wcs_a.pixel_to_world(5.0, 30.0)])
    ids = (2**60 + np.array([7, 1, 3, 9, 5])) if id_kind == "int" else \
        np.array(["g-7", "g-1", "ü-3", "g-9", "g-5"])
    ra = np.concatenate([sky.ra.deg, [np.nan, 180.0]])
    dec = np.concatenate([sky.dec.deg, [0.0, 0.0]])
    Table({"oid": ids, "RAJ2000": ra, "DEJ2000": dec}).write(tmp_path / "cat.ecsv")
    config = {"survey": {"tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"), "bands": BANDS,
                         "catalog": str(tmp_path / "cat.ecsv"),
                         "columns": {"id": "oid", "ra": "RAJ2000", "dec": "DEJ2000"}}}
    out = tmp_path / "index"
    assert main(["--config-json", json.dumps(config), "--out-dir", str(out)]) == 0

    info = json.loads((out / "tiles.json").read_text())
    assert [t["tile"] for t in info["tiles"]] == ["A", "B"]
    assert [t["n_objects"] for t in info["tiles"]] == [2, 1]
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
    assert table["ra"].dtype.newbyteorder("=") == np.float64

    rejects = Table.read(out / "rejects.ecsv")
    assert rejects["index"].tolist() == [3, 4]
    assert rejects["reason"].tolist() == [REASON_NONFINITE, REASON_OFF]
    assert [str(v) if id_kind == "str" else int(v) for v in rejects["id"]] == \
        [ids[3].item(), ids[4].item()]


def test_index_cli_rejects_float_ids(tmp_path, capsys):
    write_tile(tmp_path, "A", make_wcs(0.0, 0.0, (8, 8)), (8, 8))
    Table({"objid": [1.0, 2.0], "ra": [0.0, 0.0], "dec": [0.0, 0.0]}).write(tmp_path / "cat.fits")
    config = {"survey": {"tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"),
                         "bands": BANDS, "catalog": str(tmp_path / "cat.fits")}}
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o")]) == 2
    assert "cat.fits: column 'objid' (survey.columns.id): object ids are floating" in \
        capsys.readouterr().err
    assert not (tmp_path / "o" / "assignment.fits").exists()


def test_index_cli_without_tiles_names_the_pattern(tmp_path, capsys):
    pattern = str(tmp_path / "nowhere" / "{tile}_{band}.fits")
    config = {"survey": {"tiles": pattern, "catalog": str(tmp_path / "cat.fits")}}
    assert main(["--config-json", json.dumps(config), "--out-dir", str(tmp_path / "o")]) == 2
    assert pattern in capsys.readouterr().err
