"""Tests of skysift.sim.inject: lensed-source rendering, flux conservation, stored parameters."""

import numpy as np
import pytest
from astropy.io import fits
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LensModel.Solver.lens_equation_solver import LensEquationSolver

from skysift import config as skyconfig
from skysift.errors import ConfigError, SurveyError
from skysift.sim.inject import (
    image_source,
    inject_lens,
    lens_kwargs,
    load_source_images,
    sersic_source,
)
from skysift.sim.paint import Frame, add_poisson, moffat_kernel, psf_kernels, render, sed_flux
from skysift.sim.render import snr

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


def _gauss_plane(n, pix, x0, y0, sigma):
    c = (n - 1) / 2
    yy, xx = (np.mgrid[:n, :n] - c) * pix
    return np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / sigma**2)


def _two_band_frame(fwhm=0.3):
    kernels = psf_kernels([fwhm] * 2, PIX, ["g", "i"], GAUSS)
    return Frame(48, PIX, (24.0, 24.0), np.array([30.0, 30.0]), np.array([475.0, 763.0]),
                 np.ones(2), None, kernels, 1)


def test_per_band_source_keeps_its_colour_gradient_across_the_arc():
    """A blue compact knot on a red smooth disc: g/i varies along the arc as in the source."""
    from skysift.sim.inject import band_image_source
    n, pix = 81, 0.03
    knot = _gauss_plane(n, pix, 0.25, 0.0, 0.04)  # g: a compact knot off the disc centre
    disc = _gauss_plane(n, pix, 0.0, 0.0, 0.3)  # i: a smooth disc
    cube = np.stack([knot + 0.02 * disc, disc])
    frame = _two_band_frame()
    centre = (0.35, 0.0)
    shape = band_image_source(lens_kwargs(1.2), cube, pix, 0.0, centre)
    flux = np.diag([400.0, 400.0])
    image, _ = render(shape, flux, frame, 5)
    arc = image[1] > 0.05 * image[1].max()
    ratio = image[0][arc] / image[1][arc]
    assert np.percentile(ratio, 95) / np.percentile(ratio, 5) > 2  # colour varies along the arc
    # summed into one template (today's 2-D path), the colour is the same everywhere
    flat, _ = render(image_source(lens_kwargs(1.2), cube.sum(axis=0), pix, 0.0, centre),
                     np.array([[400.0, 400.0], [0.0, 0.0]]), frame, 5)
    flat_ratio = flat[0][arc] / flat[1][arc]
    assert np.ptp(flat_ratio) < 1e-6 * flat_ratio.mean()
    # the unlensed source's own g/i varies the same way (same sign: knot side bluer)
    plain, _ = render(band_image_source(lens_kwargs(0.0), cube, pix, 0.0, (0.0, 0.0)), flux,
                      frame, 5)
    near = plain[1] > 0.05 * plain[1].max()
    plain_ratio = plain[0][near] / plain[1][near]
    assert np.percentile(plain_ratio, 95) / np.percentile(plain_ratio, 5) > 2


@pytest.mark.parametrize("beta", [0.5, 0.8])
def test_per_band_compact_source_flux_is_conserved_in_every_band(beta):
    from skysift.sim.inject import band_image_source
    n, pix = 61, 0.01
    point = _gauss_plane(n, pix, 0.0, 0.0, 0.02)  # R_e ~ 0.024 arcsec
    cube = np.stack([point, 3.0 * point])
    shape = band_image_source(lens_kwargs(1.5), cube, pix, 0.0, (beta, 0.0))
    fluxes = np.array([250.0, 900.0])
    image, totals = render(shape, np.diag(fluxes), _two_band_frame(0.9), supersample=5)
    mu, n_images = _point_magnification(1.5, beta)
    assert n_images == 2
    for b in range(2):
        assert image[b].sum() / fluxes[b] == pytest.approx(mu, rel=0.02)
        assert totals[b] == pytest.approx(mu, rel=0.02)


def test_per_band_source_fluxes_match_source_mag_in_the_reference_band():
    from skysift.sim.inject import source_fluxes
    frame = _two_band_frame()
    flux = source_fluxes({"source_mag": 22.0, "band_ratio": np.array([1.0, 4.0])}, frame)
    assert flux.shape == (2, 2) and flux[0, 1] == 0 and flux[1, 0] == 0
    assert flux[1, 1] == pytest.approx(10 ** (-0.4 * (22.0 - 30.0)))  # reference band i
    assert flux[0, 0] / flux[1, 1] == pytest.approx(0.25)  # the cube's own colour


def test_per_band_source_files_and_cubes(tmp_path):
    blob = _gauss_plane(21, 0.03, 0.0, 0.0, 0.1)
    for name, scale in (("a", 1.0), ("b", 2.0)):
        fits.writeto(tmp_path / f"{name}_g.fits", scale * blob)
        fits.writeto(tmp_path / f"{name}_i.fits", 3 * scale * blob)
    cubes = load_source_images(str(tmp_path / "*_{band}.fits"), ["g", "i"])
    assert len(cubes) == 2 and cubes[1].shape == (2, 21, 21)
    assert cubes[1][1].sum() == pytest.approx(3 * cubes[1][0].sum())
    fits.writeto(tmp_path / "cube.fits", np.stack([blob, 2 * blob]))
    assert load_source_images(str(tmp_path / "cube.fits"), ["g", "i"])[0].shape == (2, 21, 21)
    with pytest.raises(SurveyError, match="one plane per band"):
        load_source_images(str(tmp_path / "cube.fits"), ["g", "r", "i"])
    with pytest.raises(ConfigError, match="same number"):
        load_source_images(str(tmp_path / "*_{band}.fits"), ["g", "z"])


def test_inject_lens_with_a_cube_source_records_reference_band_magnification():
    cube = np.stack([_gauss_plane(41, 0.03, 0.1, 0.0, 0.05), _gauss_plane(41, 0.03, 0, 0, 0.2)])
    cfg = _lens_cfg(max_draws=1, arc_snr_min=0.0)
    raw = np.zeros((2, 48, 48), np.float32)
    image, params = inject_lens(raw, _two_band_frame(), cfg, 5, np.random.default_rng(3), [cube])
    assert params["source_image"] == 0 and params["magnification"] > 1
    ref_flux = 10 ** (-0.4 * (params["source_mag"] - 30.0))
    assert image[1].sum() == pytest.approx(ref_flux * params["magnification"], rel=0.02)


def test_each_source_image_is_lensed_from_its_own_pixels():
    """lenstronomy's INTERPOL caches its first image: a second image must not reuse it."""
    left = _gauss_plane(41, 0.03, -0.3, 0.0, 0.08)
    right = _gauss_plane(41, 0.03, 0.3, 0.0, 0.08)
    frame, flux = _frame(), np.array([[300.0], [0.0]])
    xx = np.mgrid[:48, :48][1]
    cx = []
    for img in (left, right):
        image, _ = render(image_source(lens_kwargs(0.0), img, 0.03, 0.0, (0.0, 0.0)), flux,
                          frame, 5)
        cx.append((image[0] * xx).sum() / image[0].sum())
    assert cx[1] - cx[0] == pytest.approx(0.6 / PIX, rel=0.05)  # not 0: its own pixels


@pytest.mark.parametrize("centre", [(0.0, 0.0), (0.1, -0.05)])
def test_steep_sersic_centred_on_a_subpixel_keeps_unit_flux(centre):
    """An n = 4 cusp on the centre subpixel of an odd grid once came out 1.8x too bright."""
    from skysift.sim.render import Sersic
    shape = Sersic(centre[0], centre[1], 0.48, 3.8, 0.4, 170.0)
    _, totals = render(shape, np.array([[1.0]]), _frame(), supersample=5)
    assert totals[0] == pytest.approx(1.0, rel=0.01)


def test_arc_snr_target_sets_how_bright_arcs_are_whatever_the_depth():
    """With ``arc_snr_target`` the arc's S/N is drawn in the range on a shallow and on a deep
    survey alike; the stored source magnitude is the one that was rendered."""
    raw = np.zeros((2, 48, 48), np.float32)
    cfg = _lens_cfg(arc_snr_target=[30.0, 60.0])
    for sky in (0.5, 20.0):  # 40x deeper and shallower: S/N would differ 40x
        frame = _frame(bands=2, sky=sky)
        got = [inject_lens(raw, frame, cfg, 3, np.random.default_rng(s)) for s in range(6)]
        for image, p in got:
            assert 30.0 <= p["arc_snr"] <= 60.0
            assert snr(image.astype(np.float64), frame.sky_sigma) == pytest.approx(p["arc_snr"],
                                                                                   rel=1e-4)
            source = sed_flux(p["source_mag"], 0.0, frame.lam_nm, 0, frame.zeropoint)[0]
            assert p["magnification"] * source == pytest.approx(image[0].sum(), rel=0.02)
    plain = inject_lens(raw, _frame(bands=2, sky=0.5), _lens_cfg(), 3,
                        np.random.default_rng(0))[1]
    assert plain["arc_snr"] > 60.0  # without the target the deep survey's arc is brighter


def test_source_colours_from_a_pool_and_theta_e_above_the_psf():
    """colours: each source takes one of the pool's slopes (the survey's faint galaxies);
    min_theta_e: theta_E drawn from the prior truncated there."""
    frame = _frame(bands=3, sky=2.0)
    raw = np.zeros((3, 48, 48), np.float32)
    cfg = _lens_cfg(theta_e_arcsec=[0.5, 3.0])
    pool = np.array([-1.25, 0.5, 3.75])
    got = [inject_lens(raw, frame, cfg, 2, np.random.default_rng(s), colours=pool,
                       min_theta_e=1.2)[1] for s in range(12)]
    assert {p["source_slope"] for p in got} <= set(pool.tolist())
    assert len({p["source_slope"] for p in got}) > 1
    assert min(p["theta_e_arcsec"] for p in got) > 1.2
    free = [inject_lens(raw, frame, cfg, 2, np.random.default_rng(s))[1] for s in range(12)]
    assert min(p["theta_e_arcsec"] for p in free) < 1.2  # the prior reaches below 1.2
    assert not {p["source_slope"] for p in free} & set(pool.tolist())


def test_faint_colours_are_those_of_the_faint_resolved_galaxies():
    from skysift.sim.hosts import faint_colours
    slope = np.array([0.1, 0.2, 0.3, 0.4, 9.0, np.nan, 0.7])
    mag = np.array([20.0, 21.0, 24.0, 25.0, 26.0, 25.0, 26.0])
    r50 = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1])  # the last: point-like
    got = faint_colours(slope, mag, r50, np.full(7, 0.8), 1.2)
    assert got.tolist() == [0.3, 0.4, 5.0]  # fainter than the median 24; 9 clipped to 5
