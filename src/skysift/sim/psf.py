"""The PSF measured from a survey's own stars, for tiles whose headers hold no PSF model.

Pure functions over raw cutouts (image units, any band count): :func:`star_rows` picks the
candidates (bright objects whose half-light radius is near the survey's smallest: a point
source's is set by the PSF alone), :func:`fit_moffat` fits a circular Moffat (centre, FWHM,
beta, amplitude, background) to one stamp, :func:`fit_stamps` to every band of many, and
:func:`locus` keeps the stars: the candidates whose fitted FWHM is the smallest common one
(on a pixel grid a compact galaxy is as small as a star in half-light radius, never in
fitted FWHM); :func:`measure_psf` gives each band's median FWHM and beta over the stars.
:class:`skysift.sim.frames.Frames` turns them into kernels with
:func:`skysift.sim.paint.moffat_kernel` (``training_set.psf.model: stars``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from skysift.stamps.normalise import border_stats

#: stars need this peak signal-to-noise (peak over the border noise) to be fitted
MIN_PEAK_SNR = 30.0
#: candidates: half-light radius within this factor of the smallest bright objects'
LOCUS_WIDTH = 1.5
#: stars: fitted FWHM (reference band) within this factor of the smallest candidates'
FWHM_LOCUS_WIDTH = 1.1
#: beta is fitted within these bounds (beta -> infinity is a Gaussian)
BETA_BOUNDS = (1.2, 10.0)
#: pixels farther than this many FWHM (first guess) from the star's centre are not fitted
FIT_RADIUS_FWHM = 3.0


@dataclass(frozen=True)
class PsfEstimate:
    """Each band's Moffat PSF measured on ``n_stars`` stars: FWHM (arcsec) and beta."""

    fwhm_arcsec: np.ndarray
    beta: np.ndarray
    n_stars: int


def moffat(xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, fwhm_pix: float,
           beta: float) -> np.ndarray:
    """Circular Moffat profile at pixel centres (xx, yy), peak 1."""
    alpha = fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (1.0 + ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2) ** -beta


#: the border statistics of the preprocess step: median background, 1.4826 x MAD noise
_BORDER = {"background": "border_median", "scale": "border_mad"}


def _sky_noise(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) border median and noise of (n, s, s) stamps (:func:`border_stats`); noise 0
    where the border gives none."""
    stats = border_stats(np.asarray(images, dtype=np.float32)[:, None], _BORDER)[:, 0]
    return stats[:, 0], np.where((stats[:, 2] > 0) | (stats[:, 3] > 0), 0.0, stats[:, 1])


def peak_snr(images: np.ndarray) -> np.ndarray:
    """(n,) peak over border noise of (n, s, s) stamps after the border median."""
    sky, noise = _sky_noise(images)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = np.nanmax(np.where(np.isfinite(images), images, -np.inf), axis=(1, 2))
        return np.where(noise > 0, (peak - sky) / noise, 0.0)


def star_rows(r50_arcsec: np.ndarray, snr: np.ndarray, min_stars: int) -> np.ndarray:
    """Rows of the stellar locus: bright (peak S/N >= MIN_PEAK_SNR) objects whose half-light
    radius is within LOCUS_WIDTH of the median of the ``min_stars`` smallest bright ones (no
    galaxy is smaller than the PSF). Empty when fewer than ``min_stars`` are bright."""
    bright = np.flatnonzero((snr >= MIN_PEAK_SNR) & np.isfinite(r50_arcsec)
                            & (r50_arcsec > 0))
    if bright.size < min_stars:
        return np.zeros(0, dtype=int)
    r = r50_arcsec[bright]
    m0 = float(np.median(np.sort(r)[:min_stars]))
    return np.sort(bright[(r <= LOCUS_WIDTH * m0) & (r >= m0 / LOCUS_WIDTH)])


def fit_moffat(img: np.ndarray) -> tuple[float, float] | None:
    """FWHM (pixels) and beta of a circular Moffat fitted to one star stamp (s, s), with a
    free centre, amplitude and constant background; None when the fit fails."""
    img = np.asarray(img, dtype=float)
    s = img.shape[0]
    sky_a, noise_a = _sky_noise(img[None])
    if not (noise_a[0] > 0) or not np.isfinite(img).any():
        return None
    sky, noise = float(sky_a[0]), float(noise_a[0])
    yy, xx = np.mgrid[:s, :s].astype(float)
    peak = np.nanargmax(np.where(np.isfinite(img), img, -np.inf))
    py, px = divmod(int(peak), s)
    amp0 = float(img[py, px] - sky)
    if not amp0 > 0:
        return None
    half = (img - sky) >= 0.5 * amp0
    fwhm0 = max(2.0 * np.sqrt(half.sum() / np.pi), 1.0)
    radius = FIT_RADIUS_FWHM * fwhm0 + 2
    near = ((xx - px) ** 2 + (yy - py) ** 2 <= radius**2) & np.isfinite(img)
    x, y, data = xx[near], yy[near], img[near]

    def resid(p):
        return (p[0] * moffat(x, y, p[1], p[2], p[3], p[4]) + p[5] - data) / noise

    p0 = [amp0, px, py, fwhm0, 3.0, sky]
    lo = [0.0, px - 2.0, py - 2.0, 0.5, BETA_BOUNDS[0], sky - 10 * noise]
    hi = [np.inf, px + 2.0, py + 2.0, s / 2.0, BETA_BOUNDS[1], sky + 10 * noise]
    try:
        fit = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", max_nfev=200)
    except ValueError:
        return None
    if not fit.success:
        return None
    return float(fit.x[3]), float(fit.x[4])


def fit_stamps(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moffat FWHM (pixels) and beta (n, band) of stamps (n, band, s, s); NaN where a fit
    fails."""
    images = np.asarray(images, dtype=float)
    fwhm = np.full(images.shape[:2], np.nan)
    beta = np.full(images.shape[:2], np.nan)
    for i in range(images.shape[0]):
        for b in range(images.shape[1]):
            got = fit_moffat(images[i, b])
            if got is not None:
                fwhm[i, b], beta[i, b] = got
    return fwhm, beta


def locus(fwhm_ref: np.ndarray, min_stars: int, width: float = FWHM_LOCUS_WIDTH) -> np.ndarray:
    """Mask of the stars among candidates: fitted FWHM (reference band) within ``width`` of
    the median of the ``min_stars`` smallest fitted ones; all False with fewer fits."""
    ok = np.isfinite(fwhm_ref)
    if ok.sum() < min_stars:
        return np.zeros(len(fwhm_ref), bool)
    m0 = float(np.median(np.sort(fwhm_ref[ok])[:min_stars]))
    return ok & (fwhm_ref <= width * m0) & (fwhm_ref >= m0 / width)


def summarise(fwhm: np.ndarray, beta: np.ndarray, pixscale_arcsec: float) -> PsfEstimate | None:
    """Each band's median FWHM (arcsec) and beta over stars fitted in every band (n, band)."""
    ok = np.isfinite(fwhm).all(axis=1)
    if not ok.any():
        return None
    return PsfEstimate(np.median(fwhm[ok], axis=0) * pixscale_arcsec, np.median(beta[ok], axis=0),
                       int(ok.sum()))


def measure_psf(images: np.ndarray, pixscale_arcsec: float, ref: int = 0,
                min_stars: int = 1) -> PsfEstimate | None:
    """Each band's median Moffat FWHM (arcsec) and beta over the stars (:func:`locus` on band
    ``ref``) among candidate stamps (n, band, s, s); None without a star fitted in every band."""
    fwhm, beta = fit_stamps(images)
    keep = locus(fwhm[:, ref], min_stars) if len(fwhm) else np.zeros(0, bool)
    return summarise(fwhm[keep], beta[keep], pixscale_arcsec)
