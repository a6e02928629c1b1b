"""Tests of skysift.survey.files, skysift.survey.tiles and skysift.survey.catalog: tile
discovery, FITS tiles (plain, fpack,
masks), the catalog (column mapping, verbatim ids, duplicates)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from survey_helpers import (
    BANDS,
    make_config,
    make_wcs,
    write_band,
    write_scaled_band,
    write_tile,
)

from skysift.errors import SurveyError
from skysift.io import read_table
from skysift.survey.catalog import read_catalog
from skysift.survey.files import discover_tiles, find_tiles, missing_band_message, tile_path
from skysift.survey.labels import load_labels
from skysift.survey.tiles import (
    TileHeader,
    find_image_hdu,
    read_tile,
    read_tile_header,
    rejected_pixels,
)

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


def test_tile_missing_a_band_is_listed_apart(tmp_path):
    pattern = str(tmp_path / "calexp-HSC-{band}-{tile}.fits")
    for name in ("calexp-HSC-g-9813,3", "calexp-HSC-r-9813,3", "calexp-HSC-r-9813,4"):
        (tmp_path / f"{name}.fits").touch()
    tiles, missing = find_tiles(pattern, BANDS)
    assert tiles == ["9813,3", "9813,4"] and missing == {"9813,4": ["g"]}
    assert discover_tiles(pattern, BANDS) == ["9813,3"]  # the index rejects 9813,4's objects
    assert missing_band_message(pattern, "9813,4", ["g"]).startswith(
        str(tmp_path / "calexp-HSC-g-9813,4.fits") + ": band 'g' of tile '9813,4' is missing")


def test_pattern_without_band_field(tmp_path):
    with pytest.raises(SurveyError, match=r"\{band\}"):
        discover_tiles(str(tmp_path / "{tile}.fits"), BANDS)
    (tmp_path / "only.fits").touch()
    assert discover_tiles(str(tmp_path / "{tile}.fits"), ["r"]) == ["only"]


# --------------------------------------------------------------------------- reading


def test_find_image_hdu():
    wcs = make_wcs(10, 0, (8, 8))
    hdul = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), name="WHT"),
                         fits.ImageHDU(np.zeros((8, 8), np.float32), wcs.to_header(), name="SCI")])
    assert find_image_hdu(hdul, None, "f.fits") == 2
    assert find_image_hdu(hdul, "sci", "f.fits") == 2
    assert find_image_hdu(hdul, 1, "f.fits") == 1
    assert find_image_hdu(hdul, None, "f.fits", need_wcs=False) == 1
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
    assert stack.images.dtype.isnative and stack.masked is None
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


def test_pool_reuses_arrays_of_the_same_shape(tmp_path):
    wcs = make_wcs(20.0, -30.0, (12, 10))
    a = write_tile(tmp_path, "a", wcs, (12, 10), np.random.default_rng(1))
    b = write_tile(tmp_path, "b", wcs, (12, 10), np.random.default_rng(2))
    write_tile(tmp_path, "c", make_wcs(20.0, -30.0, (12, 11)), (12, 11))
    config, pool = make_config(tmp_path), {}
    first = read_tile(config, "a", pool)
    np.testing.assert_array_equal(first.images, a)
    pool["images"] = first.images
    second = read_tile(config, "b", pool)
    assert second.images is first.images and not pool  # refilled in place, taken out
    np.testing.assert_array_equal(second.images, b)
    pool["images"] = second.images
    assert read_tile(config, "c", pool).images.shape == (2, 12, 11) and not pool


def test_fpack_tile_reads_the_same(tmp_path):
    wcs = make_wcs(20.0, -30.0, (24, 16), rot_deg=10, sip=True)
    plain = write_tile(tmp_path, "p", wcs, (24, 16), np.random.default_rng(1))
    packed = write_tile(tmp_path, "p", wcs, (24, 16), np.random.default_rng(1), compressed=True)
    np.testing.assert_array_equal(plain, packed)
    a = read_tile(make_config(tmp_path), "p")
    b = read_tile(make_config(tmp_path, compressed=True), "p")
    with fits.open(b.paths[0]) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
    np.testing.assert_array_equal(a.images, b.images)
    assert (a.shape, a.pixscale_arcsec, a.psf_fwhm_arcsec) == (b.shape, b.pixscale_arcsec,
                                                               b.psf_fwhm_arcsec)
    assert b.wcs.sip is not None  # the distortion survives the celestial sub-WCS
    np.testing.assert_allclose(b.wcs.all_pix2world([[3.3, 17.1]], 0),
                               a.wcs.all_pix2world([[3.3, 17.1]], 0), atol=1e-12)


def _scaled_raw(dtype, shape, rng):
    """Raw integers spanning the type's range (both signs), one BLANK value among them."""
    info = np.iinfo(dtype)
    raw = rng.integers(info.min + 1, info.max, size=shape, dtype=dtype)
    raw[0, 0], raw[-1, -1], raw[3, 4] = info.max, info.min + 1, -7
    return raw


@pytest.mark.parametrize("dtype,bscale,bzero", [(np.int16, 0.25, 1000.0),
                                                 (np.int32, 1.5e-4, -12.5)])
@pytest.mark.parametrize("compressed", [False, True])
def test_scaled_integer_tiles_read_as_physical_values(tmp_path, dtype, bscale, bzero,
                                                      compressed):
    shape = (21, 17)
    wcs = make_wcs(30.0, -5.0, shape)
    rng = np.random.default_rng(4)
    ext = ".fits.fz" if compressed else ".fits"
    expect = []
    for band in BANDS:
        raw = _scaled_raw(dtype, shape, rng)
        expect.append(write_scaled_band(tmp_path / "tiles" / f"t_{band}{ext}", raw, wcs,
                                        bscale, bzero, blank=-7, compressed=compressed))
    config = make_config(tmp_path, compressed=compressed)
    stack = read_tile(config, "t")
    assert stack.images.dtype == np.float32 and stack.images.dtype.isnative
    np.testing.assert_array_equal(stack.images, np.stack(expect).astype(np.float32))
    assert np.isnan(stack.images[:, 3, 4]).all() and np.isfinite(stack.images).sum() == 2 * (
        shape[0] * shape[1] - 1)
    assert read_tile_header(config, "t").shape == shape


def test_scaled_band_is_converted_a_block_of_rows_at_a_time(tmp_path, monkeypatch):
    from skysift.survey import pixels
    monkeypatch.setattr(pixels, "SCALE_BLOCK_PIX", 40)  # 2 rows of 17 pixels per block
    shape = (21, 17)
    raw = _scaled_raw(np.int16, shape, np.random.default_rng(5))
    expect = write_scaled_band(tmp_path / "tiles" / "t_g.fits", raw, make_wcs(30.0, -5.0, shape),
                               0.5, -3.0, blank=-7)
    config = make_config(tmp_path, survey={"bands": ["g"]})
    np.testing.assert_array_equal(read_tile(config, "t").images[0], expect.astype(np.float32))


def test_unsigned_16_bit_bitmask_keeps_its_high_bits(tmp_path):
    shape = (8, 9)
    wcs = make_wcs(10.0, 0.0, shape)
    mask = np.zeros(shape, np.uint16)
    mask[2, 3], mask[5, 6] = 1 << 15, 1 << 1  # BITPIX 16 with BZERO = 32768
    for band in BANDS:
        write_band(tmp_path / "tiles" / f"m_{band}.fits", np.ones(shape), wcs,
                   extra_hdus=[fits.ImageHDU(mask, name="MASK")])
    with fits.open(tmp_path / "tiles" / "m_g.fits", do_not_scale_image_data=True) as hdul:
        assert hdul["MASK"].header["BZERO"] == 32768 and hdul["MASK"].data.dtype == ">i2"
    config = make_config(tmp_path, survey={"mask": {"kind": "bitmask", "hdu": "MASK",
                                                    "bad_bits": 1 << 15}})
    stack = read_tile(config, "m")
    assert np.argwhere(stack.masked[0]).tolist() == [[2, 3]]
    assert np.isnan(stack.images[:, 2, 3]).all() and np.isfinite(stack.images).sum() == 2 * 71


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
        big = np.zeros((64, 64), np.float32)
        (tmp_path / "tiles" / "t_g.fits").unlink()
        write_band(tmp_path / "tiles" / "t_g.fits", big, wcs)
        write_band(bad, big, wcs)
        bad.write_bytes(bad.read_bytes()[:2880 * 3])
        return "t_r.fits: FITS file is truncated"
    if kind == "no_wcs":
        fits.PrimaryHDU(good).writeto(bad)
        return "t_r.fits: .*celestial WCS.*set survey.hdu"
    if kind == "shape":
        write_band(bad, np.zeros((16, 17), np.float32), wcs)
        return r"t_r.fits: image shape \(16, 17\) differs from .*t_g.fits"
    if kind == "misaligned":
        write_band(bad, good, make_wcs(10.001, 0, (16, 16)))
        return "t_r.fits: pixel grid differs from .*t_g.fits"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "no_wcs", "shape", "misaligned"])
def test_read_tile_errors_name_the_file(tmp_path, kind):
    message = _bad_file(tmp_path, kind)
    with pytest.raises(SurveyError, match=message):
        read_tile(make_config(tmp_path), "t")


# --------------------------------------------------------------------------- masks


def test_rejected_pixels_kinds():
    bits = np.array([[0, 1, 2, 32], [4, 0, 33, 0]], np.int32)
    assert rejected_pixels(bits, {"kind": "bitmask"}).tolist() == [[0, 1, 1, 1], [1, 0, 1, 0]]
    assert rejected_pixels(bits, {"kind": "bitmask"}, 1 | 4).tolist() == \
        [[0, 1, 0, 0], [1, 0, 1, 0]]
    w = np.array([2.0, 0.0, -1.0, np.nan, np.inf])
    assert rejected_pixels(w, {"kind": "weight"}).tolist() == [0, 1, 1, 1, 0]
    assert rejected_pixels(w, {"kind": "variance"}).tolist() == [0, 1, 1, 1, 1]


def test_hsc_style_mask_hdu_with_named_planes(tmp_path):
    """calexp-like files: image, MASK (planes named by MP_* keys) and VARIANCE HDUs."""
    shape = (12, 14)
    wcs = make_wcs(30.0, 1.0, shape)
    mask = np.zeros(shape, np.int32)
    mask[2, 3] = 1 << 0     # BAD
    mask[5, 6] = 1 << 5     # DETECTED: a source, not a defect
    mask[7, 8] = 1 << 8     # NO_DATA
    planes = {"MP_BAD": 0, "MP_SAT": 1, "HIERARCH MP_DETECTED": 5, "HIERARCH MP_NO_DATA": 8}
    hdus = [fits.ImageHDU(mask, fits.Header(list(planes.items())), name="MASK"),
            fits.ImageHDU(np.ones(shape, np.float32), name="VARIANCE")]
    write_tile(tmp_path, "9813", wcs, shape, np.random.default_rng(2), extra_hdus=hdus)
    config = make_config(tmp_path, survey={"mask": {"kind": "bitmask", "hdu": "MASK",
                                                    "bad_bits": ["BAD", "NO_DATA"]}})
    stack = read_tile(config, "9813")
    want = np.zeros(shape, bool)
    want[2, 3] = want[7, 8] = True
    np.testing.assert_array_equal(stack.masked, np.stack([want, want]))
    assert np.isnan(stack.images[:, want]).all() and np.isfinite(stack.images[:, ~want]).all()
    config["survey"]["mask"]["bad_bits"] = ["BAD", "CR"]
    with pytest.raises(SurveyError, match=r"9813_g.fits: HDU 1: no mask plane 'CR' .*MP_CR"):
        read_tile(config, "9813")


def test_separate_invvar_files_and_their_errors(tmp_path):
    """Legacy-Surveys-like layout: image and inverse-variance maps in separate files."""
    shape = (10, 10)
    wcs = make_wcs(200.0, 10.0, shape)
    write_tile(tmp_path, "1999p100", wcs, shape)
    for b, band in enumerate(BANDS):
        invvar = np.full(shape, 4.0, np.float32)
        invvar[b, :] = 0.0  # a dead row, a different one per band
        write_band(tmp_path / "tiles" / f"1999p100_{band}_invvar.fits.fz", invvar, wcs,
                   compressed=True)
    pattern = str(tmp_path / "tiles" / "{tile}_{band}_invvar.fits.fz")
    config = make_config(tmp_path, survey={"mask": {"kind": "weight", "file": pattern}})
    stack = read_tile(config, "1999p100")
    assert stack.masked[0, 0].all() and not stack.masked[0, 1:].any()
    assert stack.masked[1, 1].all() and np.isnan(stack.images[1, 1]).all()
    assert stack.mask_paths[1].endswith("1999p100_r_invvar.fits.fz")
    (tmp_path / "tiles" / "1999p100_r_invvar.fits.fz").unlink()
    with pytest.raises(SurveyError, match="1999p100_r_invvar.fits.fz: mask file not found"):
        read_tile_header(config, "1999p100")
    write_band(tmp_path / "tiles" / "1999p100_r_invvar.fits.fz", np.ones((10, 11)), wcs)
    with pytest.raises(SurveyError, match=r"_r_invvar.fits.fz: mask HDU 0 has shape \(10, 11\)"):
        read_tile(config, "1999p100")


def test_mask_in_tile_file_needs_an_hdu_name(tmp_path):
    write_tile(tmp_path, "t", make_wcs(0, 0, (8, 8)), (8, 8))
    config = make_config(tmp_path, survey={"mask": {"kind": "weight"}})
    with pytest.raises(SurveyError, match="t_g.fits: .*set survey.mask.hdu"):
        read_tile_header(config, "t")


# --------------------------------------------------------------------------- catalog


def test_catalog_column_mapping_and_checks(tmp_path):
    Table({"COADD_OBJECT_ID": [5, 6], "ALPHAWIN_J2000": [1.0, 2.0],
           "DELTAWIN_J2000": [0.0, 0.5]}).write(tmp_path / "gold.fits")
    config = make_config(tmp_path, catalog=tmp_path / "gold.fits", survey={"columns": {
        "id": "COADD_OBJECT_ID", "ra": "ALPHAWIN_J2000", "dec": "DELTAWIN_J2000"}})
    cat = read_catalog(config)
    assert cat.ids.tolist() == [5, 6] and cat.dec_deg.tolist() == [0.0, 0.5]
    config["survey"]["columns"]["ra"] = "RA"
    with pytest.raises(SurveyError, match=r"gold.fits: no column 'RA' .*survey.columns.ra"):
        read_catalog(config)
    Table({"objid": [], "ra": [], "dec": []}).write(tmp_path / "empty.csv")
    with pytest.raises(SurveyError, match="empty.csv: the catalog has no rows"):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "empty.csv"))


def test_csv_ids_verbatim(tmp_path):
    big = 2**53 + 1  # not representable as a float64
    (tmp_path / "a.csv").write_text(f"objid,ra,dec\n{big},1,2\n-7,3,4\n")
    assert read_catalog(make_config(tmp_path, catalog=tmp_path / "a.csv")).ids.tolist() == \
        [big, -7]
    (tmp_path / "b.csv").write_text("objid,ra,dec\n000123,1,2\n123,3,4\nJ0101+0101,5,6\n")
    ids = read_catalog(make_config(tmp_path, catalog=tmp_path / "b.csv")).ids
    assert ids.dtype.kind == "U" and ids.tolist() == ["000123", "123", "J0101+0101"]


@pytest.mark.parametrize("ids, shown", [([2**62 + 1, 5, 2**62 + 1], "4611686018427387905 (row 0)"),
                                        (["a", "ü", "ü"], "ü (row 1), ü (row 2)")])
def test_duplicate_ids_are_an_error(tmp_path, ids, shown):
    Table({"objid": ids, "ra": [1.0, 2.0, 3.0], "dec": [0.0] * 3}).write(tmp_path / "d.ecsv")
    with pytest.raises(SurveyError, match=r"d.ecsv: column 'objid' .*2 rows share an id, e\.g\. "
                       + re.escape(shown)):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "d.ecsv"))


def test_float_ids_are_an_error(tmp_path):
    Table({"objid": [1.0, 2.0], "ra": [0.0, 0.0], "dec": [0.0, 0.0]}).write(tmp_path / "f.fits")
    with pytest.raises(SurveyError, match="f.fits: column 'objid' .*floating point"):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "f.fits"))


def _write_parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table(columns), path)


@pytest.mark.parametrize("kind", ["int64", "uint64", "str"])
def test_parquet_catalog_and_labels_keep_ids_verbatim(tmp_path, kind):
    """Rubin's catalogs are Parquet: ids above 2**53 stay exact, string ids verbatim, nulls
    are blanks (never floats)."""
    import pyarrow as pa
    if kind == "int64":  # none of these is a float64
        ids = pa.array([2**62 + 1, 2**53 + 1, -(2**60) - 3], pa.int64())
        expect = [2**62 + 1, 2**53 + 1, -(2**60) - 3]
    elif kind == "uint64":  # above the int64 range: their decimal strings
        ids = pa.array([2**64 - 1, 2**63 + 5, 7], pa.uint64())
        expect = [str(2**64 - 1), str(2**63 + 5), "7"]
    else:
        ids = pa.array(["000123", "J0101+0101", "ü-7"])
        expect = ["000123", "J0101+0101", "ü-7"]
    _write_parquet(tmp_path / "cat.parquet", {
        "objid": ids, "coord_ra": [150.0, 150.1, None], "coord_dec": [2.0, 2.1, 2.2],
        "parentObjectId": pa.array([None, 2**62 + 3, 0], pa.int64()),
        "extra": pa.array(["x", "y", "x"]).dictionary_encode()})
    parent = read_table(tmp_path / "cat.parquet", "catalog")["parentObjectId"]
    assert parent.dtype == np.int64 and parent.mask.tolist() == [True, False, False]
    assert parent[1] == 2**62 + 3  # an integer column with nulls is not made float
    config = make_config(tmp_path, catalog=tmp_path / "cat.parquet", survey={
        "columns": {"id": "objid", "ra": "coord_ra", "dec": "coord_dec"}})
    cat = read_catalog(config)
    assert cat.ids.tolist() == expect and cat.ids.dtype.kind == ("i" if kind == "int64" else "U")
    np.testing.assert_array_equal(cat.ra_deg, [150.0, 150.1, np.nan])
    _write_parquet(tmp_path / "labels.parquet", {
        "objid": ids, "is_lens": pa.array([1, None, 0], pa.int64())})
    config["survey"]["labels"] = str(tmp_path / "labels.parquet")
    labels = load_labels(config, 0, {"name": "lens", "label": "is_lens"}, cat.ids)
    found, label = labels.lookup(cat.ids)
    assert found.tolist() == [True, False, True] and label.tolist() == [1, 0, 0]


def test_parquet_catalog_with_a_null_id_is_refused(tmp_path):
    import pyarrow as pa
    _write_parquet(tmp_path / "cat.parquet", {"objid": pa.array([1, None], pa.int64()),
                                              "ra": [1.0, 2.0], "dec": [0.0, 0.0]})
    with pytest.raises(SurveyError, match=r"cat.parquet: column 'objid' .*has blank ids"):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "cat.parquet"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(SurveyError, match=r"bad.parquet: cannot read catalog .*Parquet table"):
        read_catalog(make_config(tmp_path, catalog=tmp_path / "bad.parquet"))
