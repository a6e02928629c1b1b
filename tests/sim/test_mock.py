"""The mock survey writes a small survey in exactly the format a user brings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skysift.config import deep_update, validate
from skysift.errors import ConfigError
from skysift.io import read_table
from skysift.sim import known as mock_known
from skysift.sim import mock, mockfiles
from skysift.sim import objects as mo
from skysift.sim import render as mr

N_TILES, N_GAL, N_STAR, SIZE = 2, 8, 3, 96


def tiny_config(root, **overrides) -> dict:
    """A validated config for a 2-tile, 96-pixel mock written under ``root``."""
    config = {
        "seed": 5,
        "survey": {"tiles": str(root / "tiles" / "{tile}_{band}.fits"),
                   "catalog": str(root / "catalog.fits"), "labels": str(root / "truth.fits")},
        "mock": {"n_tiles": N_TILES, "tile_size_pix": SIZE, "overlap_pix": 16,
                 "n_galaxies_per_tile": N_GAL, "n_stars_per_tile": N_STAR,
                 "lens_fraction": 0.25, "merger_fraction": 0.25},
    }
    return validate(deep_update(config, overrides))


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("mock")
    config = tiny_config(root)
    return config, mock.make_survey(config)


def test_tile_names_and_paths_follow_config(tmp_path):
    config = tiny_config(tmp_path, mock={"n_tiles": 3})
    assert mockfiles.tile_names(config) == ["m000", "m001", "m002"]
    paths = mockfiles.tile_paths(config)
    assert len(paths) == 9 and paths[1] == str(tmp_path / "tiles" / "m000_r.fits")


def test_tiles_are_float32_with_rotated_celestial_wcs_and_keys(survey):
    config, summary = survey
    paths = mockfiles.tile_paths(config)
    assert summary["n_files"] == len(paths) == N_TILES * 3
    for path, band in zip(paths, config["survey"]["bands"] * N_TILES, strict=True):
        with fits.open(path) as hdul:
            data, header = hdul[0].data, hdul[0].header
        assert data.shape == (SIZE, SIZE) and data.dtype == np.dtype(">f4")
        wcs = WCS(header)
        assert wcs.has_celestial and wcs.wcs.ctype[0] == "RA---TAN"
        assert header["CD1_2"] != 0.0 and header["CD2_1"] != 0.0  # rotated, not axis-aligned
        assert header["PSF_FWHM"] == config["mock"]["psf_fwhm_arcsec"][band]
        assert header["MAGZP"] == config["mock"]["zeropoint"] and header["FILTER"] == band
        assert np.isfinite(data).all() and data.std() > 0


def test_ids_are_exact_above_2_53_and_truth_counts_match_fractions(survey):
    config, summary = survey
    cat = read_table(config["survey"]["catalog"])
    truth = read_table(config["survey"]["labels"])
    n_gal = N_GAL * N_TILES
    assert len(cat) == len(truth) == n_gal + N_STAR * N_TILES
    assert cat["objid"].dtype.kind == "i" and cat["objid"].dtype.itemsize == 8
    assert sorted(cat["objid"].tolist()) == [2**53 + 1 + i for i in range(len(cat))]
    assert list(cat["objid"]) == list(truth["objid"])
    assert list(cat["objid"]) != sorted(cat["objid"])  # shuffled
    assert truth["is_lens"].sum() == round(0.25 * n_gal) == summary["n_lens"]
    assert truth["is_merger"].sum() == round(0.25 * n_gal)
    assert truth["is_star"].sum() == N_STAR * N_TILES
    assert not np.any(truth["is_lens"] & truth["is_merger"])
    assert {"mag_g", "mag_r", "mag_i"} <= set(cat.colnames)
    assert np.all(np.isfinite(cat["mag_r"]))


def test_lenses_reach_the_arc_snr_floor(survey):
    config, _ = survey
    truth = read_table(config["survey"]["labels"])
    lens = truth[truth["is_lens"] == 1]
    lo, hi = config["mock"]["lens"]["theta_e_arcsec"]
    assert np.all(lens["arc_snr"] >= config["mock"]["lens"]["arc_snr_min"])
    assert np.all((lens["theta_e_arcsec"] >= lo) & (lens["theta_e_arcsec"] <= hi))
    assert np.all(lens["magnification"] > 1.0)
    merger = truth[truth["is_merger"] == 1]
    assert set(merger["merger_stage"]) <= set(mo.STAGES)
    pair, tidal = merger["merger_stage"] == "pair", merger["merger_tidal_snr"]
    assert np.all(tidal[pair] == 0) and np.all(tidal[~pair] > 0)
    other = np.ma.filled(truth["merger_tidal_snr"][truth["is_merger"] == 0], np.nan)
    assert np.all(np.isnan(other))


def test_star_peaks_where_its_radec_maps_through_each_tile_wcs(tmp_path):
    # faint sky: only the star's own Poisson noise is left
    config = tiny_config(tmp_path, mock={"n_galaxies_per_tile": 1, "n_stars_per_tile": 10,
                                         "lens_fraction": 0.0, "merger_fraction": 0.0,
                                         "sky_sigma_mag": {"g": 35, "r": 35, "i": 35}})
    mock.make_survey(config)
    cat = read_table(config["survey"]["catalog"])
    stars = read_table(config["survey"]["labels"])["is_star"] == 1
    checked = 0
    for path in mockfiles.tile_paths(config)[1::3]:  # r band of each tile
        data = fits.getdata(path).astype(float)
        x, y = WCS(fits.getheader(path)).world_to_pixel_values(cat["ra"], cat["dec"])
        for i in np.flatnonzero(stars):
            crowded = np.sort(np.hypot(x - x[i], y - y[i]))[1] < 12
            # a star half-way between two pixels has no well-defined brightest pixel
            ambiguous = min(abs(x[i] % 1 - 0.5), abs(y[i] % 1 - 0.5)) < 0.1
            if not (5 <= x[i] <= SIZE - 6 and 5 <= y[i] <= SIZE - 6) or crowded or ambiguous:
                continue
            xi, yi = int(np.rint(x[i])), int(np.rint(y[i]))
            win = data[yi - 4:yi + 5, xi - 4:xi + 5]
            py, px = np.unravel_index(np.argmax(win), win.shape)
            assert abs(xi - 4 + px - x[i]) <= 0.5 and abs(yi - 4 + py - y[i]) <= 0.5
            yy, xx = np.mgrid[yi - 4:yi + 5, xi - 4:xi + 5]
            assert abs((win * xx).sum() / win.sum() - x[i]) < 0.1
            assert abs((win * yy).sum() / win.sum() - y[i]) < 0.1
            checked += 1
    assert checked >= 3


def test_render_centroid_is_subpixel_exact_through_a_rotated_cd():
    a = np.radians(2.5)
    cd = 0.263 * np.array([[-np.cos(a), -np.sin(a)], [-np.sin(a), np.cos(a)]])
    flux = np.array([[100.0, 200.0]])
    obj = mr.MockObject([mr.Component(mr.Sersic(0.0, 0.0, 0.8, 1.0, 0.5, 30.0), flux)])
    x0, y0 = 40.31, 17.77
    x_lo, y_lo, image = mr.render(obj, x0, y0, cd, np.array([0.9, 1.1]))
    yy, xx = np.mgrid[: image.shape[1], : image.shape[2]]
    total = image.sum(axis=(1, 2))
    np.testing.assert_allclose(total, flux[0], rtol=3e-3)
    np.testing.assert_allclose((image * (xx + x_lo)).sum(axis=(1, 2)) / total, x0, atol=0.01)
    np.testing.assert_allclose((image * (yy + y_lo)).sum(axis=(1, 2)) / total, y0, atol=0.01)


def test_same_seed_gives_bit_identical_tiles(survey, tmp_path):
    config, _ = survey
    again = tiny_config(tmp_path)
    mock.make_survey(again)
    for first, second in zip(mockfiles.tile_paths(config), mockfiles.tile_paths(again),
                             strict=True):
        assert np.array_equal(fits.getdata(first), fits.getdata(second))
    a, b = read_table(config["survey"]["catalog"]), read_table(again["survey"]["catalog"])
    assert np.array_equal(a["objid"], b["objid"]) and np.array_equal(a["mag_r"], b["mag_r"])


def test_unreachable_arc_snr_brightens_the_source(tmp_path):
    config = tiny_config(tmp_path, mock={"lens": {"arc_snr_min": 2000.0}})
    ctx = mock.model_context(config)
    obj, info = mo.make_lens(np.random.default_rng(1), ctx)
    assert info["brightened"] and info["arc_snr"] >= 2000.0
    _, _, arc = mr.render(mr.MockObject(obj.components[1:]), 0.0, 0.0, ctx.cd_arcsec,
                          ctx.fwhm_arcsec)
    assert mr.snr(arc, ctx.sky_sigma) == pytest.approx(info["arc_snr"], rel=1e-6)


def _tidal_snr(obj, ctx) -> float:
    _, _, tidal = mr.render(mr.MockObject(obj.components[2:]), 0.0, 0.0, ctx.cd_arcsec,
                            ctx.fwhm_arcsec)
    return mr.snr(tidal, ctx.sky_sigma)


def test_merger_tidal_snr_is_measured_and_the_floor_keeps_pairs_out(tmp_path):
    free = mock.model_context(tiny_config(tmp_path))
    floor = 15.0
    visible = mock.model_context(tiny_config(tmp_path, mock={"merger": {"tidal_snr_min": floor}}))
    stages, snrs = [], []
    for seed in range(40):
        obj, info = mo.make_merger(np.random.default_rng(seed), free)
        stages.append(info["merger_stage"])
        snrs.append(info["merger_tidal_snr"])
        if info["merger_stage"] == "pair":
            assert len(obj.components) == 2 and info["merger_tidal_snr"] == 0.0
        else:
            assert _tidal_snr(obj, free) == pytest.approx(info["merger_tidal_snr"], rel=1e-6)
        vobj, vinfo = mo.make_merger(np.random.default_rng(seed), visible)
        assert vinfo["merger_stage"] != "pair"
        assert vinfo["merger_tidal_snr"] >= floor
        assert _tidal_snr(vobj, visible) == pytest.approx(vinfo["merger_tidal_snr"], rel=1e-6)
    # without a floor every stage is drawn and many tidal features are below 15 (the default)
    assert set(stages) == set(mo.STAGES) and min(s for s in snrs if s > 0) < floor


def test_unreachable_tidal_snr_brightens_the_tidal_features(tmp_path):
    config = tiny_config(tmp_path, mock={"merger": {"tidal_snr_min": 1e5}})
    ctx = mock.model_context(config)
    obj, info = mo.make_merger(np.random.default_rng(3), ctx)
    assert info["brightened"] and info["merger_tidal_snr"] >= 1e5
    assert _tidal_snr(obj, ctx) == pytest.approx(info["merger_tidal_snr"], rel=1e-6)


def test_fpack_csv_and_default_truth_path(tmp_path):
    config = tiny_config(tmp_path, survey={"tiles": str(tmp_path / "{tile}.{band}.fits.fz"),
                                           "catalog": str(tmp_path / "cat.csv"), "labels": None},
                         mock={"n_tiles": 1, "n_galaxies_per_tile": 2, "n_stars_per_tile": 1})
    mock.make_survey(config)
    with fits.open(mockfiles.tile_paths(config)[0]) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
        assert hdul[1].data.shape == (SIZE, SIZE) and WCS(hdul[1].header).has_celestial
    cat = read_table(tmp_path / "cat.csv")
    assert cat["objid"].dtype.kind == "i" and cat["objid"].min() > 2**53
    assert len(read_table(tmp_path / "cat_truth.fits")) == 3


def test_cli_writes_the_survey_and_refuses_a_real_survey(tmp_path, capsys):
    config = tiny_config(tmp_path, mock={"n_tiles": 1, "n_galaxies_per_tile": 2})
    assert mock.main(["--config-json", json.dumps(config), "--quiet"]) == 0
    assert all((tmp_path / "tiles" / f"m000_{b}.fits").exists() for b in "gri")
    config["survey"]["kind"] = "files"
    assert mock.main(["--config-json", json.dumps(config)]) == 2
    assert "survey.kind" in capsys.readouterr().err


def test_missing_band_settings_are_a_config_error(tmp_path):
    config = tiny_config(tmp_path, survey={"bands": ["g", "r", "z"]})
    with pytest.raises(ConfigError, match="psf_fwhm_arcsec.*'z'"):
        mock.make_survey(config)


def test_known_lens_table_is_a_bright_arc_sample_plus_off_survey(tmp_path):
    from astropy.coordinates import SkyCoord
    known_path = tmp_path / "known.csv"
    config = tiny_config(tmp_path, survey={"known_lenses": str(known_path),
                                           "known_lenses_columns": {"name": "NAME"}},
                         mock={"known_lenses_fraction": 0.5, "known_lenses_off_survey": 2})
    mock.make_survey(config)
    known = read_table(known_path)
    truth, cat = read_table(tmp_path / "truth.fits"), read_table(tmp_path / "catalog.fits")
    lens = truth["is_lens"] == 1
    n_lens = int(lens.sum())
    n_known = int(np.floor(0.5 * n_lens + 0.5))
    assert len(known) == n_known + 2 and known.colnames[:3] == ["NAME", "ra", "dec"]
    assert all(n.startswith("SKYSIFT J") for n in known["NAME"])
    sky = SkyCoord(cat["ra"], cat["dec"], unit="deg")
    idx, sep, _ = SkyCoord(known["ra"], known["dec"], unit="deg").match_to_catalog_sky(sky)
    on = sep.arcsec[:n_known]
    assert on.max() < 1.0 and on.mean() > 0.01  # scattered, well inside a 1" match
    assert truth["is_lens"][idx[:n_known]].tolist() == [1] * n_known
    snr = np.sort(np.asarray(truth["arc_snr"][lens]))[::-1]
    assert np.sort(np.asarray(truth["arc_snr"][idx[:n_known]]))[::-1].tolist() == \
        snr[:n_known].tolist()  # the brightest arcs
    assert (sep.arcsec[n_known:] > 60).all()  # off the footprint: nothing near
    for path in mockfiles.tile_paths(config)[::3]:
        with fits.open(path) as hdul:
            x, y = WCS(hdul[0].header).world_to_pixel_values(known["ra"][n_known:],
                                                             known["dec"][n_known:])
            assert ((x < -0.5) | (x > SIZE) | (y < -0.5) | (y > SIZE)).all()


def test_known_lenses_leave_the_survey_bit_identical(survey, tmp_path):
    config, _ = survey
    again = tiny_config(tmp_path, survey={"known_lenses": str(tmp_path / "known.fits")})
    mock.make_survey(again)
    for first, second in zip(mockfiles.tile_paths(config), mockfiles.tile_paths(again),
                             strict=True):
        assert np.array_equal(fits.getdata(first), fits.getdata(second))
    for key in ("catalog", "labels"):
        a, b = read_table(config["survey"][key]), read_table(again["survey"][key])
        assert a.colnames == b.colnames
        for c in a.colnames:
            kw = {"equal_nan": True} if a[c].dtype.kind == "f" else {}
            assert np.array_equal(np.asarray(a[c]), np.asarray(b[c]), **kw), (key, c)


def test_iau_names_truncate():
    assert mock_known.iau_name("X", 35.0 + 1e-9, -5.0) == "X J022000.00-050000.0"
    assert mock_known.iau_name("X", 359.99999999, 0.5) == "X J235959.99+003000.0"
