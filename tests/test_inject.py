"""Tests of skysift.inject: lensed-source rendering, flux conservation, stored parameters."""

import numpy as np
import pytest
from astropy.io import fits
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

from skysift import config as skyconfig
from skysift.errors import ConfigError, SurveyError
from skysift.inject import (
    Frame,
    add_poisson,
    image_source,
    inject_lens,
    lens_kwargs,
    load_source_images,
    moffat_kernel,
    psf_kernels,
    render,
    sed_flux,
    sersic_source,
)
from skysift.mock_render import snr

PIX = 0.263
GAUSS = {"model": "gaussian", "fwhm_arcsec": None, "moffat_beta": 3.5, "image": None}


def _frame(size=48, bands=1, sky=1.0, gain=None, fwhm=0.9):
    kernels = psf_kernels([fwhm] * bands, PIX, ["r"] * bands, GAUSS)
    return Frame(size, PIX, (size // 2 + 0.0, size // 2 + 0.0), np.full(bands, 30.0),
                 np.linspace(475.0, 763.0, bands), np.full(bands, sky), gain, kernels, 0)


def _point_magnification(theta_e, beta):
    lens = LensModel(["SIS"])
    kw = [dict(theta_E=theta_e, center_x=0.0, center_y=0.0)]
    x, y = LensEquationSolver(lens).image_position_from_source(
        beta, 0.0, kw, min_distance=0.02, search_window=8)
    return float(np.abs(lens.magnification(x, y, kw)).sum()), len(x)


@pytest.mark.parametrize("beta", [0.5, 0.8])
def test_sis_compact_source_flux_is_source_flux_times_total_magnification(beta):
    frame = _frame()
    shape = sersic_source(lens_kwargs(1.5), r_e=0.05, n=1.0, q=1.0, angle_rad=0.0,
                          centre=(beta, 0.0))
    image, totals = render(shape, np.array([[1000.0], [0.0]]), frame, supersample=5)
    mu, n_images = _point_magnification(1.5, beta)
    assert n_images == 2
    assert image.sum() / 1000.0 == pytest.approx(mu, rel=0.02)
    assert totals[0] == pytest.approx(image.sum() / 1000.0, rel=1e-6)  # PSF conserves flux


def test_zero_einstein_radius_leaves_the_unlensed_source():
    frame = _frame()
    centre = (0.4, -0.3)
    lensed = sersic_source(lens_kwargs(1.2), 0.3, 1.0, 1.0, 0.0, centre)
    plain = sersic_source(lens_kwargs(0.0), 0.3, 1.0, 1.0, 0.0, centre)
    flux = np.array([[500.0], [0.0]])
    image, totals = render(plain, flux, frame, 5)
    assert totals[0] == pytest.approx(1.0, abs=2e-3) and image.sum() == pytest.approx(500, rel=2e-3)
    yy, xx = np.mgrid[:48, :48]
    w = image[0] / image[0].sum()
    cx, cy = (w * xx).sum(), (w * yy).sum()
    assert cx == pytest.approx(24 + centre[0] / PIX, abs=0.02)
    assert cy == pytest.approx(24 + centre[1] / PIX, abs=0.02)
    ixx, iyy = (w * (xx - cx) ** 2).sum(), (w * (yy - cy) ** 2).sum()
    assert ixx == pytest.approx(iyy, rel=0.01)  # a round source stays round
    assert render(lensed, flux, frame, 5)[0].sum() > 1.5 * image.sum()  # lensing magnifies


def _lens_cfg(**over):
    cfg = skyconfig.load()["training_set"]["lens"]
    cfg.update(dict(theta_e_arcsec=[1.5, 1.5], source_offset_max=0.2,
                    source_r_e_arcsec=[0.1, 0.1], n_clumps=[2, 2], arc_snr_min=0.0,
                    max_draws=1), **over)
    return cfg


def test_stored_parameters_match_what_was_rendered():
    rng = np.random.default_rng(0)
    frame = _frame(bands=3, sky=2.0)
    raw = rng.normal(0, 2.0, (3, 48, 48)).astype(np.float32)
    image, p = inject_lens(raw, frame, _lens_cfg(), 5, np.random.default_rng(3))
    arc = image.astype(np.float64) - raw
    assert p["theta_e_arcsec"] == pytest.approx(1.5)
    assert p["arc_snr"] == pytest.approx(snr(arc, frame.sky_sigma), rel=1e-4)
    assert p["arc_flux"] == pytest.approx(arc[0].sum(), rel=1e-4)
    source_flux = sed_flux(p["source_mag"], 0.0, frame.lam_nm, 0, frame.zeropoint)[0]
    assert p["magnification"] * source_flux == pytest.approx(arc[0].sum(), rel=0.02)
    assert p["magnification"] > 3  # a source near the centre of an SIS: an Einstein ring
    yy, xx = np.mgrid[:48, :48]
    radius = np.hypot(xx - 24, yy - 24) * PIX
    assert (arc.sum(axis=0) * radius).sum() / arc.sum() == pytest.approx(1.5, rel=0.2)


def test_seeds_make_injections_reproducible():
    frame = _frame(bands=2, gain=np.full(2, 4.0))
    raw = np.zeros((2, 48, 48), np.float32)
    cfg = _lens_cfg(theta_e_arcsec=[0.6, 3.0], arc_snr_min=15.0, max_draws=3)
    a, pa = inject_lens(raw, frame, cfg, 4, np.random.default_rng(11))
    b, pb = inject_lens(raw, frame, cfg, 4, np.random.default_rng(11))
    c, _ = inject_lens(raw, frame, cfg, 4, np.random.default_rng(12))
    assert np.array_equal(a, b) and pa == pb
    assert not np.array_equal(a, c)


def test_arc_redrawn_until_its_snr_reaches_the_minimum():
    frame = _frame(bands=2, sky=5.0)
    raw = np.zeros((2, 48, 48), np.float32)
    cfg = _lens_cfg(source_mag=[21.0, 26.0], arc_snr_min=20.0, max_draws=8)
    snrs = [inject_lens(raw, frame, cfg, 3, np.random.default_rng(s))[1] for s in range(8)]
    for p in snrs:
        assert p["arc_snr"] >= 20.0 or p["n_draws"] == 8


def test_poisson_noise_of_the_arc():
    rng = np.random.default_rng(0)
    image = np.full((2, 64, 64), 50.0)
    noisy = add_poisson(image, np.array([2.0, 8.0]), rng)
    assert np.var(noisy[0] - image[0]) == pytest.approx(50.0 / 2.0, rel=0.08)
    assert np.var(noisy[1] - image[1]) == pytest.approx(50.0 / 8.0, rel=0.08)
    assert np.array_equal(add_poisson(image, None, rng), image)


def test_psf_kernels_have_the_header_fwhm():
    for kernel in (moffat_kernel(4.0, 3.5), psf_kernels([1.052], PIX, ["r"], GAUSS)[0]):
        k = kernel.shape[0] // 2
        assert kernel.sum() == pytest.approx(1.0)
        profile = kernel[k, k:]  # along +x from the centre
        half = np.interp(0.5 * profile[0], profile[::-1], np.arange(k + 1)[::-1])
        assert 2 * half == pytest.approx(4.0, rel=0.05)
    with pytest.raises(SurveyError, match="psf_fwhm_arcsec|PSF FWHM"):
        psf_kernels([np.nan], PIX, ["r"], GAUSS)
    with pytest.raises(ConfigError, match="psf.image"):
        psf_kernels([1.0], PIX, ["r"], dict(GAUSS, model="image"))


def test_real_galaxy_image_sources(tmp_path):
    yy, xx = np.mgrid[:41, :41]
    blob = np.exp(-0.5 * ((xx - 20) ** 2 + (yy - 20) ** 2) / 9.0)
    fits.writeto(tmp_path / "gal1.fits", blob)
    fits.writeto(tmp_path / "gal2.fits", np.stack([blob, 2 * blob]))  # (band, y, x): summed
    images = load_source_images(str(tmp_path / "gal*.fits"))
    assert len(images) == 2 and images[1].shape == (41, 41)
    frame = _frame()
    flux = np.array([[300.0], [0.0]])
    plain, _ = render(image_source(lens_kwargs(0.0), images[0], 0.03, 0.3, (0.0, 0.0)),
                      flux, frame, 5)
    assert plain.sum() == pytest.approx(300.0, rel=0.01)
    lensed, totals = render(image_source(lens_kwargs(1.5), images[0], 0.03, 0.3, (0.5, 0.0)),
                            flux, frame, 5)
    assert totals[0] == pytest.approx(_point_magnification(1.5, 0.5)[0], rel=0.03)
    with pytest.raises(ConfigError, match="matches no file"):
        load_source_images(str(tmp_path / "none*.fits"))
