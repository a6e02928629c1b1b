"""Tests of skysift.cutouts: stamp geometry, EDGE/MASKED flags, and the cutouts CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skysift import cutouts, survey
from skysift.cutouts import EDGE, MASKED, extract
from skysift.io import read_arrays

BANDS = ["g", "r"]


def make_wcs(ra0, dec0, shape, pixscale_arcsec=0.5, rot_deg=0.0):
    """A TAN WCS centred on (ra0, dec0) with a rotated CD matrix."""
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    w.wcs.cd = pixscale_arcsec / 3600 * np.array([[-c, s], [s, c]])
    w.wcs.radesys = "ICRS"
    return w


def reference_extract(images, pos_xy, s):
    """Per-object, per-pixel reference of the documented stamp geometry."""
    n_band, ny, nx = images.shape
    stamps = np.full((len(pos_xy), n_band, s, s), np.nan, np.float32)
    flags = np.zeros(len(pos_xy), np.uint8)
    for k, (x, y) in enumerate(pos_xy):
        if not (np.isfinite(x) and np.isfinite(y)):
            flags[k] = EDGE
            continue
        x0, y0 = int(np.floor(x + 0.5)) - s // 2, int(np.floor(y + 0.5)) - s // 2
        for j in range(s):
            for i in range(s):
                if 0 <= y0 + j < ny and 0 <= x0 + i < nx:
                    stamps[k, :, j, i] = images[:, y0 + j, x0 + i]
                    if np.isnan(images[:, y0 + j, x0 + i]).any():
                        flags[k] |= MASKED
                else:
                    flags[k] |= EDGE
    return stamps, flags


def gaussian(shape, x0, y0, sigma=1.2, amp=100.0):
    y, x = np.mgrid[:shape[0], :shape[1]]
    return (amp * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))).astype(np.float32)


@pytest.mark.parametrize("size", [9, 10])
def test_source_at_known_radec_lands_at_stamp_centre(size):
    shape = (64, 80)
    wcs = make_wcs(35.0, -5.0, shape, pixscale_arcsec=0.263, rot_deg=37.0)
    sky = SkyCoord(35.0012, -4.9991, unit="deg")
    x, y = wcs.world_to_pixel(sky)
    images = np.stack([gaussian(shape, x, y), 0.5 * gaussian(shape, x, y, sigma=2.0)])
    tile_idx, x_pix, y_pix, _ = survey.assign_objects([sky.ra.deg], [sky.dec.deg],
                                                      [(wcs, shape)])
    assert tile_idx[0] == 0 and abs(x_pix[0] - x) < 1e-6 and abs(y_pix[0] - y) < 1e-6
    stamps, flags = extract(images, np.column_stack([x_pix, y_pix]), size)
    assert stamps.shape == (1, 2, size, size) and stamps.dtype == np.float32
    assert flags[0] == 0
    for band in range(2):
        peak = np.unravel_index(np.nanargmax(stamps[0, band]), (size, size))
        assert peak == (size // 2, size // 2)


def test_edge_stamp_is_nan_padded_and_flagged():
    images = np.arange(2 * 12 * 15, dtype=np.float32).reshape(2, 12, 15)
    stamps, flags = extract(images, np.array([[1.2, 2.0], [13.6, 10.4], [7.0, 6.0]]), 7)
    assert flags.tolist() == [EDGE, EDGE, 0]
    # object pixel (1, 2): stamp x in [-2, 5), y in [-1, 6)
    assert np.isnan(stamps[0, :, 0, :]).all() and np.isnan(stamps[0, :, :, :2]).all()
    np.testing.assert_array_equal(stamps[0, :, 1:, 2:], images[:, 0:6, 0:5])
    # object pixel (14, 10): stamp x in [11, 18), y in [7, 14)
    np.testing.assert_array_equal(stamps[1, :, :5, :4], images[:, 7:12, 11:15])
    assert np.isnan(stamps[1, :, 5:, :]).all() and np.isnan(stamps[1, :, :, 4:]).all()
    np.testing.assert_array_equal(stamps[2], images[:, 3:10, 4:11])


def test_nan_pixels_flag_masked():
    images = np.ones((3, 20, 20), np.float32)
    images[1, 10, 10] = np.nan  # inside the first stamp only
    images[2, 0, 0] = np.nan    # inside the edge stamp of the second object
    pos = np.array([[10.0, 11.0], [1.0, 1.0], [2.0, 17.0], [15.0, 4.0]])
    _, flags = extract(images, pos, 8)
    assert flags.tolist() == [MASKED, EDGE | MASKED, EDGE, 0]


def test_matches_reference_everywhere():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 23, 31)).astype(">f4")  # big-endian, as FITS gives
    images[0, rng.integers(0, 23, 5), rng.integers(0, 31, 5)] = np.nan
    pos = rng.uniform(-12, 42, size=(60, 2))
    pos = np.vstack([pos, [[np.nan, 3.0], [1e30, -1e30], [15.5, 11.5], [14.5, 10.5]]])
    for size in (8, 11):
        stamps, flags = extract(images, pos, size)
        want_stamps, want_flags = reference_extract(images.astype(np.float32), pos, size)
        np.testing.assert_array_equal(stamps, want_stamps)
        np.testing.assert_array_equal(flags, want_flags)


def test_no_objects():
    stamps, flags = extract(np.zeros((3, 10, 10), np.float32), np.empty((0, 2)), 8)
    assert stamps.shape == (0, 3, 8, 8) and flags.shape == (0,) and flags.dtype == np.uint8


def _write_survey(tmp_path, ids):
    shape = (48, 48)
    wcs_a, wcs_b = make_wcs(0.0, 0.0, shape, rot_deg=25), make_wcs(1.0, 0.0, shape)
    for tile, wcs in (("A", wcs_a), ("B", wcs_b)):
        for k, band in enumerate(BANDS):
            header = wcs.to_header()
            header["PSF_FWHM"], header["MAGZP"] = 1.0 + k, 30.0
            data = np.full(shape, k + 1.0, np.float32)
            path = tmp_path / "tiles" / f"{tile}_{band}.fits"
            path.parent.mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(data, header=header).writeto(path)
    sky = wcs_a.pixel_to_world([24.0, 2.0, 30.3], [24.0, 40.0, 11.7])
    Table({"objid": ids, "ra": sky.ra.deg, "dec": sky.dec.deg}).write(tmp_path / "cat.fits")
    return {"survey": {"tiles": str(tmp_path / "tiles" / "{tile}_{band}.fits"), "bands": BANDS,
                       "catalog": str(tmp_path / "cat.fits")},
            "cutouts": {"stamp_size_pix": 8}}


@pytest.mark.parametrize("ids", [2**62 + np.array([3, 1, 2]), np.array(["x1", "x2", "x3"])])
def test_cli_writes_stamps_with_exact_ids(tmp_path, ids):
    config = json.dumps(_write_survey(tmp_path, ids))
    assert survey.main(["--config-json", config, "--out-dir", str(tmp_path / "index")]) == 0
    assignment = str(tmp_path / "index" / "assignment.fits")
    for tile in ("A", "B"):
        out = str(tmp_path / "cutouts" / f"{tile}.h5")
        assert cutouts.main(["--config-json", config, "--tile", tile, "--assignment", assignment,
                             "--out", out]) == 0
    names = ("images", "flags", "index", "id", "ra", "dec", "pos_xy")
    arrays, attrs = read_arrays(tmp_path / "cutouts" / "A.h5", names)
    assert arrays["images"].shape == (3, 2, 8, 8)
    assert arrays["index"].tolist() == [0, 1, 2]
    if ids.dtype.kind == "i":
        assert arrays["id"].dtype == np.int64 and arrays["id"].tolist() == ids.tolist()
    else:
        assert [v.decode() for v in arrays["id"]] == ids.tolist()
    assert arrays["flags"].tolist() == [0, EDGE, 0]
    np.testing.assert_allclose(arrays["pos_xy"], [[24.0, 24.0], [2.0, 40.0], [30.3, 11.7]],
                               atol=1e-6)
    np.testing.assert_array_equal(arrays["images"][0, 1], 2.0)
    assert attrs["bands"] == BANDS and attrs["tile"] == "A" and attrs["stamp_size_pix"] == 8
    assert attrs["psf_fwhm_arcsec"] == [1.0, 2.0] and attrs["zeropoint"] == [30.0, 30.0]
    assert attrs["pixscale_arcsec"] == pytest.approx(0.5)
    assert "config_hash" in attrs
    empty, attrs_b = read_arrays(tmp_path / "cutouts" / "B.h5", names)
    assert empty["images"].shape == (0, 2, 8, 8) and empty["id"].shape == (0,)
    assert attrs_b["tile"] == "B"


def test_cli_missing_assignment_is_a_user_error(tmp_path, capsys):
    config = json.dumps(_write_survey(tmp_path, np.arange(3)))
    missing = str(tmp_path / "index" / "assignment.fits")
    assert cutouts.main(["--config-json", config, "--tile", "A", "--assignment", missing,
                         "--out", str(tmp_path / "A.h5")]) == 2
    assert "assignment.fits: assignment not found" in capsys.readouterr().err
