"""Tests of skysift.stamps.cutouts: stamp geometry on any WCS, flags, masks, shards, rejects,
the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from survey_helpers import BANDS, gaussian, make_wcs, write_scaled_band, write_tile

from skysift import config as skyconfig
from skysift.io import read_arrays
from skysift.stamps import cut, cutouts
from skysift.stamps.cut import extract
from skysift.stamps.flags import CENTRE, EDGE, EMPTY, MASKED, NAN
from skysift.stamps.normalise import normalise
from skysift.stamps.preprocess import preprocess_file
from skysift.survey import index
from skysift.survey.labels import join_labels

DATASETS = ("images", "flags", "index", "id", "ra", "dec", "pos_xy", "tile")


def reference_extract(images, pos_xy, s, masked=None):
    """Per-object, per-pixel reference of the documented stamp geometry and flags."""
    n_band, ny, nx = images.shape
    stamps = np.full((len(pos_xy), n_band, s, s), np.nan, np.float32)
    flags = np.zeros(len(pos_xy), np.uint8)
    for k, (x, y) in enumerate(pos_xy):
        x0 = int(np.floor(x + 0.5)) - s // 2 if np.isfinite(x) else -10**9
        y0 = int(np.floor(y + 0.5)) - s // 2 if np.isfinite(y) else -10**9
        for j in range(s):
            for i in range(s):
                yy, xx = y0 + j, x0 + i
                if not (0 <= yy < ny and 0 <= xx < nx):
                    flags[k] |= EDGE
                    continue
                stamps[k, :, j, i] = images[:, yy, xx]
                for b in range(n_band):
                    if masked is not None and masked[b, yy, xx]:
                        flags[k] |= MASKED
                    elif not np.isfinite(images[b, yy, xx]):
                        flags[k] |= NAN
        if (~np.isfinite(stamps[k])).reshape(n_band, -1).all(axis=1).any():
            flags[k] |= EMPTY
        if not np.isfinite(stamps[k, :, s // 2, s // 2]).all():
            flags[k] |= CENTRE
    return stamps, flags


# --------------------------------------------------------------------------- core


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


def test_nan_strips_and_masks_set_their_bits():
    images = np.ones((2, 30, 30), np.float32)
    images[1, :, 10] = np.nan          # a dead column in band 1
    images[:, 20:, :] = np.nan         # a NaN strip across every band
    masked = np.zeros(images.shape, bool)
    masked[0, 3:6, 24:27] = True       # a masked defect in band 0
    images[masked] = np.nan            # as read_tile leaves it
    pos = np.array([[12.0, 5.0], [10.0, 5.0], [25.0, 4.0], [5.0, 26.0], [5.0, 17.0]])
    _, flags = extract(images, pos, 7, masked)
    assert flags.tolist() == [NAN, NAN | CENTRE, MASKED | CENTRE, NAN | EMPTY | CENTRE, NAN]
    _, flags = extract(images, pos, 7)  # without the mask plane, masked pixels are just NaN
    assert flags[2] == NAN | CENTRE


@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_reference_everywhere(with_mask):
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 23, 31)).astype(">f4")  # big-endian, as FITS gives
    images[0, rng.integers(0, 23, 5), rng.integers(0, 31, 5)] = np.nan
    images[1, 2, 3] = np.inf
    masked = None
    if with_mask:
        masked = rng.random(images.shape) < 0.01
        images[masked] = np.nan
    pos = rng.uniform(-12, 42, size=(60, 2))
    pos = np.vstack([pos, [[np.nan, 3.0], [1e30, -1e30], [15.5, 11.5], [14.5, 10.5]]])
    for size in (8, 11):
        stamps, flags = extract(images, pos, size, masked)
        want_stamps, want_flags = reference_extract(images.astype(np.float32), pos, size,
                                                    masked)
        np.testing.assert_array_equal(stamps, want_stamps)
        np.testing.assert_array_equal(flags, want_flags)


def test_no_objects_and_out_buffer():
    stamps, flags = extract(np.zeros((3, 10, 10), np.float32), np.empty((0, 2)), 8)
    assert stamps.shape == (0, 3, 8, 8) and flags.shape == (0,) and flags.dtype == np.uint8
    buf = np.zeros((1, 3, 4, 4), np.float32)
    out, _ = extract(np.ones((3, 10, 10), np.float32), [[5.0, 5.0]], 4, out=buf)
    assert out is buf and (buf == 1).all()


# --------------------------------------------------------------------------- through FITS


def _survey(root, wcs_kind, compressed=False):
    """One 64x72 tile with point sources injected at known RA/Dec; returns (config, sky)."""
    shape = (64, 72)
    ra0 = 0.0 if wcs_kind == "ra_wrap" else 150.0
    wcs = make_wcs(ra0, 2.0, shape, pixscale_arcsec=0.4,
                   rot_deg={"plain": 0.0, "rotated": 37.0}.get(wcs_kind, -20.0),
                   sip=wcs_kind == "sip")
    xy = np.array([[10.3, 12.7], [36.5, 30.2], [60.8, 51.4], [20.0, 44.49], [50.51, 8.0]])
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    if wcs_kind == "ra_wrap":
        assert ra.min() < 0.1 and ra.max() > 359.9  # the tile straddles RA = 0/360
        ra = np.where(ra > 180, ra - 360, ra)  # and the catalog gives RA in [-180, 180)
    images = np.zeros((2,) + shape, np.float32)
    for x, y in xy:
        images[0] += gaussian(shape, x, y)
        images[1] += gaussian(shape, x, y, sigma=1.8, amp=40.0)
    write_tile(root, "T", wcs, shape, images=images, compressed=compressed)
    Table({"objid": 2**60 + np.arange(len(xy)), "ra": ra, "dec": dec}).write(root / "cat.fits")
    ext = ".fits.fz" if compressed else ".fits"
    return {"survey": {"kind": "files", "tiles": str(root / "tiles" / f"{{tile}}_{{band}}{ext}"),
                       "bands": BANDS, "catalog": str(root / "cat.fits"), "labels": None},
            "cutouts": {"stamp_size_pix": 11}}


def _run(root, config, shards=("s0000",), extra=()):
    text = json.dumps(config)
    assert index.main(["--config-json", text, "--out-dir", str(root / "index")]) == 0
    for shard in shards:
        code = cutouts.main(["--config-json", text, "--shard", shard, "--index-dir",
                             str(root / "index"), "--out", str(root / f"{shard}.h5"), *extra])
        if code:
            return code
    return 0


@pytest.mark.parametrize("wcs_kind", ["plain", "rotated", "sip", "ra_wrap", "fpack"])
def test_source_at_known_radec_lands_at_stamp_centre(tmp_path, wcs_kind):
    config = _survey(tmp_path, wcs_kind, compressed=wcs_kind == "fpack")
    assert _run(tmp_path, config) == 0
    arrays, _ = read_arrays(tmp_path / "s0000.h5", DATASETS)
    assert len(arrays["index"]) == 5 and (arrays["flags"] == 0).all()
    yy, xx = np.mgrid[:11, :11]
    for k in range(5):
        stamp = arrays["images"][k, 0]
        assert stamp[5, 5] >= 0.999 * stamp.max()  # (x = 36.5 ties pixels 36 and 37)
        cx, cy = (stamp * xx).sum() / stamp.sum(), (stamp * yy).sum() / stamp.sum()
        assert abs(cx - 5) <= 0.5 + 1e-3 and abs(cy - 5) <= 0.5 + 1e-3
        # the sub-pixel offset is exactly the position's distance to its pixel centre
        frac = arrays["pos_xy"][k] - np.floor(arrays["pos_xy"][k] + 0.5)
        np.testing.assert_allclose([cx - 5, cy - 5], frac, atol=0.02)


@pytest.mark.parametrize("compressed", [False, True])
def test_scaled_integer_tiles_pass_check_and_cutouts(tmp_path, compressed):
    """Tiles of BITPIX 16/32 with BSCALE/BZERO/BLANK (older releases): check accepts them and
    the stamps hold BSCALE * raw + BZERO, NaN (flagged) at the BLANK pixel."""
    from skysift.survey import check
    shape = (40, 44)
    wcs = make_wcs(150.0, 2.0, shape, rot_deg=15)
    rng = np.random.default_rng(8)
    ext = ".fits.fz" if compressed else ".fits"
    physical = []
    for band, dtype, bscale, bzero in (("g", np.int16, 0.05, 200.0),
                                       ("r", np.int32, 2.5e-5, -3.0)):
        raw = rng.integers(-30000, 30000, size=shape).astype(dtype)
        raw[30, 12] = -32768  # BLANK, inside the second object's stamp
        physical.append(write_scaled_band(tmp_path / "tiles" / f"T_{band}{ext}", raw, wcs,
                                          bscale, bzero, blank=-32768, compressed=compressed))
    xy = np.array([[10.0, 11.0], [12.0, 28.0]])
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    Table({"objid": [7, 8], "ra": ra, "dec": dec}).write(tmp_path / "cat.fits")
    pattern = str(tmp_path / "tiles" / f"{{tile}}_{{band}}{ext}")
    config = {"survey": {"kind": "files", "tiles": pattern, "bands": BANDS,
                         "catalog": str(tmp_path / "cat.fits"), "labels": None},
              "cutouts": {"stamp_size_pix": 9}}
    assert check.main(["--config-json", json.dumps(config), "--report",
                       str(tmp_path / "check.json")]) == 0
    assert _run(tmp_path, config) == 0
    arrays, _ = read_arrays(tmp_path / "s0000.h5", DATASETS)
    expect = np.stack(physical).astype(np.float32)
    np.testing.assert_array_equal(arrays["images"][0], expect[:, 7:16, 6:15])
    np.testing.assert_array_equal(arrays["images"][1], expect[:, 24:33, 8:17])
    assert np.isnan(arrays["images"][1, :, 6, 4]).all()  # tile pixel (x 12, y 30)
    assert arrays["flags"].tolist() == [0, NAN]


def _two_tiles(root, ids):
    shape = (48, 48)
    wcs_a, wcs_b = make_wcs(0.0, 0.0, shape, rot_deg=25), make_wcs(1.0, 0.0, shape)
    for tile, wcs in (("A", wcs_a), ("B", wcs_b)):
        base = 10.0 if tile == "B" else 0.0  # tells the tiles' pixels apart
        write_tile(root, tile, wcs, shape,
                   images=[np.full(shape, base + b + 1.0) for b in range(2)])
    sky_a = wcs_a.pixel_to_world([24.0, 2.0, 30.3], [24.0, 40.0, 11.7])
    sky_b = wcs_b.pixel_to_world([10.0], [10.0])
    ra = np.concatenate([sky_a.ra.deg, sky_b.ra.deg, [40.0]])
    dec = np.concatenate([sky_a.dec.deg, sky_b.dec.deg, [0.0]])
    Table({"objid": ids, "ra": ra, "dec": dec}).write(root / "cat.ecsv")
    return {"survey": {"kind": "files", "tiles": str(root / "tiles" / "{tile}_{band}.fits"),
                       "bands": BANDS, "catalog": str(root / "cat.ecsv"), "labels": None},
            "cutouts": {"stamp_size_pix": 8}, "index": {"tiles_per_shard": 2}}


@pytest.mark.parametrize("ids", [2**62 + np.array([3, 1, 2, 9, 4]),
                                 np.array(["x1", "ü2", "x3", "J0101+0101", "x5"])])
def test_shard_of_two_tiles_keeps_ids_and_tiles(tmp_path, ids):
    assert _run(tmp_path, _two_tiles(tmp_path, ids)) == 0
    arrays, attrs = read_arrays(tmp_path / "s0000.h5", DATASETS)
    assert arrays["images"].shape == (4, 2, 8, 8)
    assert arrays["index"].tolist() == [0, 1, 2, 3]
    assert [t.decode() for t in arrays["tile"]] == ["A", "A", "A", "B"]
    if ids.dtype.kind == "i":
        assert arrays["id"].dtype == np.int64 and arrays["id"].tolist() == ids[:4].tolist()
    else:
        assert [v.decode() for v in arrays["id"]] == ids[:4].tolist()
    # labels join by id exactly (no float on the way), whatever the id type
    found, label = join_labels(arrays["id"], ids[[3, 1]], np.array([1, 0], np.uint8))
    assert found.tolist() == [False, True, False, True] and label.tolist() == [0, 0, 0, 1]
    assert arrays["flags"].tolist() == [0, EDGE, 0, 0]
    np.testing.assert_array_equal(arrays["images"][0, 1], 2.0)
    np.testing.assert_array_equal(arrays["images"][3, :, 4, 4], [11.0, 12.0])
    assert attrs["bands"] == BANDS and attrs["tiles"] == ["A", "B"] and attrs["shard"] == "s0000"
    assert attrs["layout_version"] == cutouts.LAYOUT_VERSION and attrs["stamp_size_pix"] == 8
    assert attrs["psf_fwhm_arcsec"] == [1.0, 2.0] and attrs["zeropoint"] == [30.0, 30.0]
    assert attrs["tile_info"]["B"]["n_objects"] == 1 and "tile" not in attrs
    assert attrs["flag_bits"]["EMPTY"] == EMPTY and "config_hash" in attrs
    assert len(Table.read(tmp_path / "s0000.rejects.ecsv")) == 0


def test_all_nan_tile_is_rejected_not_fatal_unless_strict(tmp_path, capsys):
    config = _two_tiles(tmp_path, np.arange(5))
    nan_band = tmp_path / "tiles" / "A_r.fits"
    with fits.open(nan_band, mode="update") as hdul:
        hdul[0].data[:] = np.nan
    assert _run(tmp_path, config, extra=["--strict"]) == 2
    assert "A_r.fits: tile A band r: no valid pixel" in capsys.readouterr().err
    assert not (tmp_path / "s0000.h5").exists()
    assert not (tmp_path / "s0000.rejects.ecsv").exists()
    assert _run(tmp_path, config) == 0
    arrays, attrs = read_arrays(tmp_path / "s0000.h5", DATASETS)
    assert arrays["index"].tolist() == [3] and attrs["tiles"] == ["A", "B"]
    rejects = Table.read(tmp_path / "s0000.rejects.ecsv")
    assert rejects["index"].tolist() == [0, 1, 2]
    assert set(rejects["reason"]) == {"tile A band r: no valid pixel (all NaN or masked)"}
    from skysift.survey import rejects as merge
    out = tmp_path / "rejects.ecsv"
    assert merge.main(["--index-dir", str(tmp_path / "index"), "--cutouts",
                       str(tmp_path / "s0000.rejects.ecsv"), "--out", str(out)]) == 0
    merged = Table.read(out)
    assert merged["index"].tolist() == [0, 1, 2, 4]  # every catalog row is cut or here
    assert merged["stage"].tolist() == ["cutouts"] * 3 + ["index"]


def test_mask_hdu_feeds_nan_and_masked_flag(tmp_path):
    config = _two_tiles(tmp_path, np.arange(5))
    shape = (48, 48)
    for band in BANDS:
        path = tmp_path / "tiles" / f"A_{band}.fits"
        with fits.open(path) as hdul:
            data, header = hdul[0].data.copy(), hdul[0].header.copy()
        weight = np.ones(shape, np.float32)
        weight[24, 25] = 0.0  # next to the first object's centre
        path.unlink()
        fits.HDUList([fits.PrimaryHDU(data, header),
                      fits.ImageHDU(weight, name="WGT")]).writeto(path)
    for band in BANDS:  # tile B has the HDU too (one survey, one layout)
        path = tmp_path / "tiles" / f"B_{band}.fits"
        with fits.open(path) as hdul:
            hdus = [fits.PrimaryHDU(hdul[0].data, hdul[0].header),
                    fits.ImageHDU(np.ones(shape, np.float32), name="WGT")]
        path.unlink()
        fits.HDUList(hdus).writeto(path)
    config["survey"]["mask"] = {"kind": "weight", "hdu": "WGT"}
    assert _run(tmp_path, config) == 0
    arrays, _ = read_arrays(tmp_path / "s0000.h5", DATASETS)
    assert arrays["flags"].tolist() == [MASKED, EDGE, 0, 0]
    assert np.isnan(arrays["images"][0, :, 4, 5]).all()  # stamp origin (20, 20)
    assert np.isfinite(arrays["images"][0]).sum() == 2 * 64 - 2


def test_cli_missing_index_is_a_user_error(tmp_path, capsys):
    config = json.dumps(_two_tiles(tmp_path, np.arange(5)))
    assert cutouts.main(["--config-json", config, "--shard", "s0000", "--index-dir",
                         str(tmp_path / "index"), "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err
    assert "assignment.fits: assignment not found; run the survey index first" in err
    assert not (tmp_path / "s.h5").exists()


# --------------------------------------------------------------------------- blank sky


def test_blank_positions_keep_away_from_objects_and_edges():
    objects = np.random.default_rng(1).uniform(0, 200, (40, 2))
    pos = cut.blank_positions((150, 200), objects, 32, 12.0, 30, np.random.default_rng(5))
    assert 0 < len(pos) <= 30
    dist = np.hypot(*(pos[:, None, :] - objects[None, :, :]).transpose(2, 0, 1))
    assert dist.min() >= 12.0
    origin = cut.stamp_origin(pos, 32)
    assert (origin >= 0).all() and (origin[:, 0] + 32 <= 200).all()
    assert (origin[:, 1] + 32 <= 150).all()
    again = cut.blank_positions((150, 200), objects, 32, 12.0, 30, np.random.default_rng(5))
    np.testing.assert_array_equal(pos, again)
    assert cut.blank_positions((20, 20), objects, 32, 1.0, 5, np.random.default_rng(0)
                                   ).shape == (0, 2)  # the stamp does not fit


def test_blank_sky_group_leaves_the_object_datasets_alone(tmp_path):
    config = _survey(tmp_path, "plain")
    config["cutouts"].update(n_blank=6, blank_min_distance_arcsec=3.0)
    assert _run(tmp_path, config) == 0
    arrays, attrs = read_arrays(tmp_path / "s0000.h5", DATASETS)
    assert len(arrays["index"]) == 5  # the objects, as without blank sky
    with h5py.File(tmp_path / "s0000.h5", "r") as fh:
        assert set(fh) == set(DATASETS) | {"ra", "dec", "blank"}
        blank = {k: fh[f"blank/{k}"][()] for k in ("images", "pos_xy", "tile")}
    assert 0 < len(blank["images"]) <= 6 and attrs["n_blank"] == len(blank["images"])
    assert np.isfinite(blank["images"]).all() and (blank["tile"] == b"T").all()
    pix = 0.4  # the tile's pixel scale: every blank centre is >= 3 arcsec from every object
    xy = np.array([[10.3, 12.7], [36.5, 30.2], [60.8, 51.4], [20.0, 44.49], [50.51, 8.0]])
    dist = np.hypot(*(blank["pos_xy"][:, None, :] - xy[None]).transpose(2, 0, 1))
    assert dist.min() >= 3.0 / pix - 1e-6
    # deterministic from (seed, tile): the same positions again, others with another seed
    assert _run(tmp_path, config) == 0
    with h5py.File(tmp_path / "s0000.h5", "r") as fh:
        np.testing.assert_array_equal(fh["blank/pos_xy"][()], blank["pos_xy"])
    assert _run(tmp_path, dict(config, seed=99)) == 0
    with h5py.File(tmp_path / "s0000.h5", "r") as fh:
        assert not np.array_equal(fh["blank/pos_xy"][()], blank["pos_xy"])
    # preprocess normalises them like the objects and keeps the object datasets as they were
    full = skyconfig.load()
    preprocess_file(tmp_path / "s0000.h5", tmp_path / "st.h5", full["preprocess"], full)
    with h5py.File(tmp_path / "s0000.h5", "r") as fh:
        expect, _ = normalise(fh["blank/images"][()], full["preprocess"])
    with h5py.File(tmp_path / "st.h5", "r") as fh:
        np.testing.assert_array_equal(fh["blank/images"][()], expect)
        assert fh["blank/mask"][()].all() and len(fh["images"]) == 5
