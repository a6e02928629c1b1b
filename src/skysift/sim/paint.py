"""Painting light into real survey cutouts: PSFs, a stamp's frame, rendering and noise.

What lens injection (:mod:`skysift.sim.inject`) and merger simulation (:mod:`skysift.sim.simulate`)
share: per-band fluxes of a power-law SED through each band's effective wavelength, the
tile's PSF per band (a Moffat of the header's FWHM, or the user's PSF image), the
:class:`Frame` of one host stamp (pixel scale, PSF, zero point, gain, position), light
models integrated over supersampled pixels with the compact parts refined (:func:`render`),
and the Poisson noise of the added light (:func:`add_poisson`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage
from scipy.signal import fftconvolve

from skysift.errors import ConfigError, SurveyError
from skysift.sim.objects import BAND_WAVELENGTH_NM
from skysift.sim.render import CUSP_HALF_PIX, FWHM_TO_SIGMA, Sersic, psf_kernel

log = logging.getLogger(__name__)

#: Finest subsampling per pixel side of the refinement of compact light (see :func:`render`).
MAX_SUPERSAMPLE = 12
#: Pixels brighter than this fraction of the brightest (and their neighbours) are refined.
REFINE_FRACTION = 1e-2
#: Pixels refined per lenstronomy call (bounds the memory of one call).
REFINE_BATCH = 512
#: Moffat kernels reach out to this many FWHM (their wings hold a few % of the light).
MOFFAT_TRUNC_FWHM = 3.0


# --- photometry and PSF -------------------------------------------------------------------

def band_wavelengths(bands: Sequence[str]) -> np.ndarray:
    """Effective wavelength (band,) in nm; unknown names spread from 475 to 905 nm in order."""
    known = [BAND_WAVELENGTH_NM.get(b) for b in bands]
    fallback = np.geomspace(475.0, 905.0, len(bands)) if len(bands) > 1 else np.array([622.0])
    return np.array([k if k is not None else f for k, f in zip(known, fallback, strict=True)])


def reference_band(bands: Sequence[str], name: str | None) -> int:
    """Channel of the band magnitudes refer to: ``name``, or the middle band when None."""
    if name is None:
        return (len(bands) - 1) // 2
    if name not in bands:
        raise ConfigError(f"training_set.reference_band '{name}' is not one of survey.bands "
                          f"{list(bands)}; name one of them or null (the middle band)")
    return list(bands).index(name)


def sed_flux(mag: float, slope: float, lam_nm: np.ndarray, ref: int,
             zeropoint: np.ndarray) -> np.ndarray:
    """Flux (band,) in image units of an SED f_nu ~ lambda**slope with AB ``mag`` in band ``ref``.

    ``zeropoint`` (band,) are AB zero points: mag = zp - 2.5 log10(flux). slope 0 is flat in
    f_nu (all AB colours 0), slope > 0 is red.
    """
    mags = mag - 2.5 * slope * np.log10(lam_nm / lam_nm[ref])
    return 10.0 ** (-0.4 * (mags - np.asarray(zeropoint, dtype=float)))


def moffat_kernel(fwhm_pix: float, beta: float) -> np.ndarray:
    """Circular Moffat PSF (2k+1, 2k+1) sampled at pixel centres, k = ceil(3 FWHM), unit sum."""
    alpha = fwhm_pix / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    k = int(np.ceil(MOFFAT_TRUNC_FWHM * fwhm_pix))
    r2 = np.add.outer(np.arange(-k, k + 1) ** 2, np.arange(-k, k + 1) ** 2)
    kernel = (1.0 + r2 / alpha**2) ** -beta
    return kernel / kernel.sum()


@functools.cache
def psf_image(path: str) -> np.ndarray:
    """A PSF image (2-D, odd sides, at the survey pixel scale) from FITS, unit sum."""
    try:
        data = fits.getdata(path)
    except (OSError, ValueError) as exc:
        raise SurveyError(f"{path}: cannot read the PSF image ({exc}); fix "
                          "training_set.psf.image") from None
    data = np.asarray(data, dtype=float).squeeze()
    if data.ndim != 2 or data.shape[0] % 2 == 0 or data.shape[1] % 2 == 0:
        raise SurveyError(f"{path}: a PSF image must be 2-D with odd sides (centred on a "
                          f"pixel), got shape {data.shape}")
    if not np.isfinite(data).all() or data.sum() <= 0:
        raise SurveyError(f"{path}: the PSF image needs finite pixels with a positive sum")
    return data / data.sum()


def psf_kernels(fwhm_arcsec: Sequence[float], pixscale_arcsec: float, band_names: Sequence[str],
                psf_cfg: Mapping, beta: Sequence[float | None] | None = None) -> list[np.ndarray]:
    """PSF kernel of each band, unit sum: ``training_set.psf`` with the tile's FWHM (arcsec)
    and, for a Moffat, each band's beta (the header's ``psf.beta_key`` or measured from
    stars; None or a missing value: ``psf.moffat_beta``)."""
    kernels = []
    betas = list(beta) if beta is not None else [None] * len(band_names)
    for fwhm, band, b_beta in zip(fwhm_arcsec, band_names, betas, strict=True):
        if psf_cfg["model"] == "image":
            if not psf_cfg["image"]:
                raise ConfigError("training_set.psf.model is image but training_set.psf.image "
                                  "is null; give a FITS path pattern with {band}")
            kernels.append(psf_image(psf_cfg["image"].format(band=band)))
            continue
        fwhm = psf_cfg["fwhm_arcsec"] if psf_cfg["fwhm_arcsec"] is not None else fwhm
        if not (np.isfinite(fwhm) and fwhm > 0):
            raise SurveyError(f"band {band}: no PSF FWHM in the tile header (survey.psf_fwhm_key);"
                              " set training_set.psf.fwhm_arcsec or give a PSF image")
        fwhm_pix = fwhm / pixscale_arcsec
        if psf_cfg["model"] == "gaussian":
            kernels.append(psf_kernel(fwhm_pix * FWHM_TO_SIGMA))
            continue
        b_beta = psf_cfg["moffat_beta"] if b_beta is None else float(b_beta)
        if not (np.isfinite(b_beta) and b_beta > 1):
            raise SurveyError(f"band {band}: Moffat beta {b_beta} from the tile header "
                              "(training_set.psf.beta_key) is not above 1; fix the key or set "
                              "it to null to use training_set.psf.moffat_beta")
        kernels.append(moffat_kernel(fwhm_pix, b_beta))
    return kernels


# --- rendering ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """Where a simulated object lands: one host's stamp geometry and calibration.

    size_pix : side of the stamp; centre_xy : the host's true position (x, y) in 0-based stamp
    pixels; zeropoint, lam_nm, sky_sigma : (band,) AB zero points, wavelengths (nm) and the
    sky noise (image units) of the stamp; gain : (band,) e- per image unit, or None for no
    Poisson noise; kernels : the PSF per band; ref : channel of the reference band.
    """

    size_pix: int
    pixscale_arcsec: float
    centre_xy: tuple[float, float]
    zeropoint: np.ndarray
    lam_nm: np.ndarray
    sky_sigma: np.ndarray
    gain: np.ndarray | None
    kernels: list
    ref: int = 0


def _grid_axes(frame: Frame, lo_pix: int, n_pix: int, supersample: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (arcsec) along x and y of the subpixel centres of pixels lo..lo+n-1."""
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    pix = (lo_pix + np.arange(n_pix))[:, None] + sub[None, :]
    return ((pix.ravel() - frame.centre_xy[0]) * frame.pixscale_arcsec,
            (pix.ravel() - frame.centre_xy[1]) * frame.pixscale_arcsec)


def _evaluate(shape, xa: np.ndarray, ya: np.ndarray) -> np.ndarray:
    """Surface density (parts, ny, nx) per arcsec**2 of ``shape`` on the grid xa x ya."""
    if hasattr(shape, "evaluate_grid"):
        return shape.evaluate_grid(xa, ya)
    xi, eta = np.meshgrid(xa, ya)
    return shape.evaluate(xi, eta)


def _refine(shape, units: np.ndarray, frame: Frame, lo_xy: tuple[int, int],
            supersample: int) -> None:
    """Re-integrate, in place, the bright pixels of ``units`` finely when the profile has
    structure (``scale_arcsec``) below the subpixel size: compact sources and knots."""
    scale = getattr(shape, "scale_arcsec", np.inf)
    fine = int(min(np.ceil(frame.pixscale_arcsec / max(scale, 1e-6)), MAX_SUPERSAMPLE))
    if fine <= supersample:
        return
    light = np.abs(units).sum(axis=0)
    bright = light > REFINE_FRACTION * light.max() if light.max() > 0 else light > 0
    bright = ndimage.binary_dilation(bright, np.ones((3, 3), bool))
    iy, ix = np.nonzero(bright)
    sub = (np.arange(fine) + 0.5) / fine - 0.5
    sx, sy = np.meshgrid(sub, sub)
    pix = frame.pixscale_arcsec
    xi = (ix[:, None] + lo_xy[0] + sx.ravel()[None, :] - frame.centre_xy[0]) * pix
    eta = (iy[:, None] + lo_xy[1] + sy.ravel()[None, :] - frame.centre_xy[1]) * pix
    for start in range(0, iy.size, REFINE_BATCH):
        part = slice(start, start + REFINE_BATCH)
        dens = shape.evaluate(xi[part], eta[part])
        units[:, iy[part], ix[part]] = dens.mean(axis=-1) * frame.pixscale_arcsec**2


def _refine_cusp(shape: Sersic, units: np.ndarray, frame: Frame, lo_xy: tuple[int, int]
                 ) -> None:
    """Re-integrate, in place, the 5 x 5 pixels about a Sérsic centre with
    :data:`MAX_SUPERSAMPLE` (even) subpixels per side: a steep (n ~ 4) cusp sampled by an
    odd grid, one subpixel on the centre, would be counted many times over."""
    pix = frame.pixscale_arcsec
    px = int(np.floor(frame.centre_xy[0] + shape.xi0 / pix + 0.5)) - lo_xy[0]
    py = int(np.floor(frame.centre_xy[1] + shape.eta0 / pix + 0.5)) - lo_xy[1]
    r, fine = CUSP_HALF_PIX, MAX_SUPERSAMPLE + MAX_SUPERSAMPLE % 2
    ny, nx = units.shape[1:]
    if not (r <= px < nx - r and r <= py < ny - r):
        return
    sub = (np.arange(fine) + 0.5) / fine - 0.5
    ix = ((lo_xy[0] + px + np.arange(-r, r + 1))[:, None] + sub[None, :]).ravel()
    iy = ((lo_xy[1] + py + np.arange(-r, r + 1))[:, None] + sub[None, :]).ravel()
    xi, eta = np.meshgrid((ix - frame.centre_xy[0]) * pix, (iy - frame.centre_xy[1]) * pix)
    block = shape.evaluate(xi, eta).reshape(1, 2 * r + 1, fine, 2 * r + 1, fine)
    units[:, py - r:py + r + 1, px - r:px + r + 1] = block.mean(axis=(2, 4)) * pix**2


def render(shape, flux: np.ndarray, frame: Frame, supersample: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Render a light model into the frame's stamp, PSF-convolved, without noise.

    Parameters
    ----------
    shape : an object with ``n_parts``, ``extent_arcsec`` and ``evaluate(xi, eta)`` returning
        (n_parts, *xi.shape) unit-flux surface densities per arcsec**2 (or ``evaluate_grid``).
    flux : (n_parts, band) flux of each unit part in image units.
    supersample : subpixels per pixel side (the surface density is averaged over them).
        Where ``shape.scale_arcsec`` (its smallest structure) is below the subpixel size,
        the pixels holding its light are integrated again with up to
        :data:`MAX_SUPERSAMPLE` subpixels per side, finer than the structure.

    Returns
    -------
    image : (band, s, s) float64, image units.
    totals : (n_parts,) image-plane integral of each unit part over the rendered area
        before the PSF: the magnification of a lensed part (1 for an unlensed, whole part).
    """
    s = frame.size_pix
    pad = max(k.shape[0] // 2 for k in frame.kernels)
    n_full = s + 2 * pad
    half = min(int(np.ceil(shape.extent_arcsec / frame.pixscale_arcsec)) + 2, n_full)
    cx, cy = (int(np.floor(c + 0.5)) for c in frame.centre_xy)
    x_lo, y_lo = max(cx - half, -pad), max(cy - half, -pad)
    nx, ny = min(cx + half + 1, s + pad) - x_lo, min(cy + half + 1, s + pad) - y_lo
    canvas = np.zeros((len(frame.kernels), n_full, n_full))
    totals = np.zeros(flux.shape[0])
    if nx > 0 and ny > 0:
        xa, _ = _grid_axes(frame, x_lo, nx, supersample)
        _, ya = _grid_axes(frame, y_lo, ny, supersample)
        dens = _evaluate(shape, xa, ya).reshape(flux.shape[0], ny, supersample, nx, supersample)
        units = dens.mean(axis=(2, 4)) * frame.pixscale_arcsec**2
        _refine(shape, units, frame, (x_lo, y_lo), supersample)
        if isinstance(shape, Sersic):
            _refine_cusp(shape, units, frame, (x_lo, y_lo))
        totals = units.sum(axis=(1, 2))
        canvas[:, y_lo + pad:y_lo + pad + ny, x_lo + pad:x_lo + pad + nx] = np.einsum(
            "pb,pyx->byx", flux, units)
    image = np.empty((len(frame.kernels), s, s))
    for b, kernel in enumerate(frame.kernels):
        image[b] = fftconvolve(canvas[b], kernel, mode="same")[pad:pad + s, pad:pad + s]
    return image, totals


def add_poisson(image: np.ndarray, gain: np.ndarray | None, rng: np.random.Generator
                ) -> np.ndarray:
    """``image`` (band, y, x) plus its own Poisson noise: electrons = image x gain[band].

    Negative pixels (FFT ringing, ~1e-12) count as zero electrons. gain None: no noise.
    """
    if gain is None:
        return image.copy()
    g = np.asarray(gain, dtype=float)[:, None, None]
    return rng.poisson(np.clip(image, 0.0, None) * g) / g
