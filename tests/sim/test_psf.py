"""The PSF of a synthetic tile: read from a Moffat header and measured from its own stars."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve

from skysift.sim.hosts import stamp_photometry
from skysift.sim.paint import moffat_kernel, psf_kernels
from skysift.sim.psf import fit_moffat, fit_stamps, locus, measure_psf, peak_snr, star_rows

PIX, FWHM, BETA, STAMP = 0.2, 0.8, 3.0, 33  # arcsec, arcsec, -, pixels
FWHM_R = 1.1  # the r band's FWHM, arcsec


def _tile(rng, fwhm_arcsec, n_stars=14, n_gal=50, size=640):
    """A tile of point sources and exponential discs seen through a Moffat PSF, with noise;
    returns the image and the (x, y, is_star) of each object."""
    truth = np.zeros((size, size))
    yy, xx = np.mgrid[:size, :size]
    objects = []
    grid = [(x, y) for x in range(30, size - 30, 48) for y in range(30, size - 30, 48)]
    picks = rng.permutation(len(grid))[: n_stars + n_gal]
    for k, g in enumerate(picks):
        x, y = grid[g][0] + rng.uniform(-3, 3), grid[g][1] + rng.uniform(-3, 3)
        star = k < n_stars
        flux = rng.uniform(3e3, 3e4)
        if star:
            ix, iy = int(round(x)), int(round(y))
            truth[iy, ix] += flux
            x, y = ix, iy
        else:
            h = rng.uniform(1.5, 5.0)  # scale length, pixels
            q, pa = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
            dx, dy = xx - x, yy - y
            u = dx * np.cos(pa) + dy * np.sin(pa)
            v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
            disc = np.exp(-np.hypot(u, v) / h)
            truth += flux * disc / disc.sum()
        objects.append((x, y, star))
    image = fftconvolve(truth, moffat_kernel(fwhm_arcsec / PIX, BETA), mode="same")
    image += rng.normal(0.0, 2.0, image.shape) + 100.0  # sky 100, noise 2
    return image, objects


def _stamps(image, objects):
    h = STAMP // 2
    return np.stack([image[int(y) - h:int(y) + h + 1, int(x) - h:int(x) + h + 1]
                     for x, y, _ in objects])


def test_the_psf_measured_from_a_tiles_stars_is_the_truth():
    rng = np.random.default_rng(5)
    img_g, objects = _tile(rng, FWHM)
    img_r, _ = _tile(np.random.default_rng(5), FWHM_R)  # same objects, wider PSF
    raw = np.stack([_stamps(img_g, objects), _stamps(img_r, objects)], axis=1)
    is_star = np.array([s for _, _, s in objects])
    phot = stamp_photometry(raw, PIX, 2.0, 0)
    rows = star_rows(phot["r50_arcsec"], peak_snr(raw[:, 0]), min_stars=5)
    assert is_star[rows].sum() >= 12  # candidates: the stars (and maybe compact galaxies)
    fwhm, _ = fit_stamps(raw[rows])
    kept = locus(fwhm[:, 0], min_stars=5)
    assert is_star[rows][kept].all() and kept.sum() >= 12  # the FWHM locus: stars only
    est = measure_psf(raw[rows], PIX, ref=0, min_stars=5)
    assert est is not None and est.n_stars == kept.sum()
    np.testing.assert_allclose(est.fwhm_arcsec, [FWHM, FWHM_R], rtol=0.04)
    np.testing.assert_allclose(est.beta, [BETA, BETA], rtol=0.2)
    # the kernel made from the measurement is the truth's within a percent of its peak
    measured = moffat_kernel(est.fwhm_arcsec[0] / PIX, est.beta[0])
    truth = moffat_kernel(FWHM / PIX, BETA)
    k = min(len(measured), len(truth)) // 2
    cm, ct = len(measured) // 2, len(truth) // 2
    diff = (measured[cm - k:cm + k + 1, cm - k:cm + k + 1]
            - truth[ct - k:ct + k + 1, ct - k:ct + k + 1])
    assert np.abs(diff).max() < 0.03 * truth.max()


def test_too_few_or_too_faint_candidates_make_no_stars():
    assert star_rows(np.array([0.5, 0.6]), np.array([100.0, 100.0]), min_stars=5).size == 0
    assert not locus(np.array([3.0, np.nan, 3.1]), min_stars=3).any()
    assert star_rows(np.full(10, 0.4), np.full(10, 5.0), min_stars=5).size == 0  # too faint
    assert fit_moffat(np.zeros((21, 21))) is None  # nothing to fit


def test_a_moffat_header_gives_the_truths_kernel(tmp_path):
    """``psf.model: moffat`` with the header's FWHM and beta (``psf.beta_key``) is exact."""
    cfg = {"model": "moffat", "fwhm_arcsec": None, "moffat_beta": 3.5, "image": None}
    got = psf_kernels([FWHM, FWHM_R], PIX, ["g", "r"], cfg, beta=[BETA, 2.5])
    np.testing.assert_array_equal(got[0], moffat_kernel(FWHM / PIX, BETA))
    np.testing.assert_array_equal(got[1], moffat_kernel(FWHM_R / PIX, 2.5))
    default = psf_kernels([FWHM], PIX, ["g"], cfg)  # no header beta: moffat_beta
    np.testing.assert_array_equal(default[0], moffat_kernel(FWHM / PIX, 3.5))
    with pytest.raises(Exception, match="beta"):
        psf_kernels([FWHM], PIX, ["g"], cfg, beta=[0.5])
