"""Lensed sources rendered with lenstronomy and injected into real survey cutouts.

The positives of a lens task, made the way survey teams make them (HOLISMOKES, DES, KiDS):
a source behind one of the survey's own galaxies, lensed by an SIE + external shear centred
on it, integrated over supersampled pixels, convolved with the tile's PSF, scaled to the
tile's flux units through its zero point, given its own Poisson noise and added to the raw
cutout (which already holds the host, its neighbours and the real sky noise).

The source model differs on purpose from the mock survey's lenses
(:func:`skysift.mock_objects.make_lens`: Sérsic n 0.7-1.5 plus 2-4 Gaussian clumps, one prior),
so that a good score on the mock is not an echo of the simulator: here an elliptical Sérsic
with n over a wide range plus 0-6 compact exponential (Sérsic n=1) star-forming knots, with
its own priors (``training_set.lens``), or a user's linear-flux FITS image of a real galaxy
lensed through an interpolated profile (lenstronomy ``INTERPOL``): a 2-D image with the
colours of an SED slope, or a (band, y, x) cube lensed band by band
(:class:`BandLensedSource`), which keeps the galaxy's own colour gradients.

Geometry: offsets (``xi``, ``eta``) in arcsec along the stamp's +x and +y pixel axes from the
host's true position; orientations are drawn isotropically, so the sky's orientation does
not matter. Colours: a power-law SED, f_nu proportional to lambda**slope, through each band's
effective wavelength (:data:`skysift.mock_objects.BAND_WAVELENGTH_NM`).
"""

from __future__ import annotations

import functools
import glob
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage
from scipy.signal import fftconvolve

from skysift.errors import ConfigError, SurveyError
from skysift.mock_objects import BAND_WAVELENGTH_NM
from skysift.mock_render import (
    CUSP_HALF_PIX,
    FWHM_TO_SIGMA,
    LensedSource,
    Sersic,
    _light_model,
    psf_kernel,
    snr,
)

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
                psf_cfg: Mapping) -> list[np.ndarray]:
    """PSF kernel of each band, unit sum: ``training_set.psf`` with the tile's FWHM (arcsec)."""
    kernels = []
    for fwhm, band in zip(fwhm_arcsec, band_names, strict=True):
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
        kernels.append(psf_kernel(fwhm_pix * FWHM_TO_SIGMA) if psf_cfg["model"] == "gaussian"
                       else moffat_kernel(fwhm_pix, psf_cfg["moffat_beta"]))
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


# --- the lens and its source ---------------------------------------------------------------

def _loguniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    lo, hi = lo_hi
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _ellipticity(q: float, angle_rad: float) -> tuple[float, float]:
    e = (1.0 - q) / (1.0 + q)
    return float(e * np.cos(2 * angle_rad)), float(e * np.sin(2 * angle_rad))


def lens_kwargs(theta_e: float, q: float = 1.0, angle_rad: float = 0.0, gamma: float = 0.0,
                gamma_angle_rad: float = 0.0) -> list[dict]:
    """lenstronomy kwargs of an SIE (Einstein radius arcsec, axis ratio q) plus shear gamma."""
    e1, e2 = _ellipticity(q, angle_rad)
    return [dict(theta_E=float(theta_e), e1=e1, e2=e2, center_x=0.0, center_y=0.0),
            dict(gamma1=float(gamma * np.cos(2 * gamma_angle_rad)),
                 gamma2=float(gamma * np.sin(2 * gamma_angle_rad)), ra_0=0.0, dec_0=0.0)]


def draw_deflector(rng: np.random.Generator, lcfg: Mapping) -> tuple[list[dict], dict]:
    """An SIE + shear from ``training_set.lens``: (lenstronomy kwargs, parameters)."""
    theta_e = _loguniform(rng, lcfg["theta_e_arcsec"])
    q = float(rng.uniform(*lcfg["lens_axis_ratio"]))
    gamma = float(rng.uniform(0.0, lcfg["shear_max"]))
    kwargs = lens_kwargs(theta_e, q, rng.uniform(0, np.pi), gamma, rng.uniform(0, np.pi))
    return kwargs, dict(theta_e_arcsec=theta_e, lens_axis_ratio=q, shear=gamma)


def sersic_source(kwargs_lens: list, r_e: float, n: float, q: float, angle_rad: float,
                  centre: tuple[float, float], clumps: Sequence[tuple[float, float, float, float]]
                  = (), extent_arcsec: float | None = None) -> LensedSource:
    """A lensed elliptical Sérsic (unit flux) plus round exponential knots (x, y, r_e, weight).

    Knot weights sum to 1 (the clump part has unit flux); their lenstronomy ``amp`` is set
    from each knot's analytic total flux.
    """
    e1, e2 = _ellipticity(q, angle_rad)
    diffuse = [dict(amp=1.0, R_sersic=r_e, n_sersic=n, e1=e1, e2=e2, center_x=centre[0],
                    center_y=centre[1])]
    knots = []
    for x, y, r_k, w in clumps:
        kw = dict(amp=1.0, R_sersic=r_k, n_sersic=1.0, center_x=x, center_y=y)
        kw["amp"] = w / _light_model("SERSIC").total_flux([kw])[0]
        knots.append(kw)
    theta_e = kwargs_lens[0]["theta_E"]
    reach = max([np.hypot(x, y) + 4 * r_k for x, y, r_k, _ in clumps], default=0.0)
    if extent_arcsec is None:
        extent_arcsec = 1.5 * theta_e + max(np.hypot(*centre) + 6 * r_e, reach) + 0.3
    scale = min([r_e] + [r_k for _, _, r_k, _ in clumps]) / 2
    return LensedSource(kwargs_lens, diffuse, knots, float(extent_arcsec), scale,
                        clump_profile="SERSIC")


def image_source(kwargs_lens: list, image: np.ndarray, pixscale_arcsec: float, angle_rad: float,
                 centre: tuple[float, float]) -> LensedSource:
    """A lensed real-galaxy image (2-D linear flux, any sum) through lenstronomy INTERPOL."""
    half = 0.5 * max(image.shape) * pixscale_arcsec * np.sqrt(2)
    diffuse = [dict(image=image, amp=1.0, center_x=centre[0], center_y=centre[1],
                    phi_G=float(angle_rad), scale=float(pixscale_arcsec))]
    return LensedSource(kwargs_lens, diffuse, [], 1.5 * kwargs_lens[0]["theta_E"]
                        + np.hypot(*centre) + half + 0.3, pixscale_arcsec,
                        diffuse_profile="INTERPOL")


@dataclass(frozen=True)
class BandLensedSource:
    """A real galaxy's (band, y, x) image lensed band by band (lenstronomy ``INTERPOL``).

    One part per band, each normalised to unit unlensed flux, all sharing one ray shooting:
    with a diagonal flux matrix (:func:`source_fluxes`) every band of the stamp is lensed
    from its own band of the source, so the galaxy keeps its colour gradients.
    """

    kwargs_lens: list
    kwargs_bands: list  # one INTERPOL kwargs dict per band
    extent_arcsec: float
    scale_arcsec: float

    @property
    def n_parts(self) -> int:
        return len(self.kwargs_bands)

    def evaluate(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Surface density (band, *xi.shape) per arcsec**2 of each band's unit-flux light."""
        from skysift.mock_render import _lens_model
        bx, by = _lens_model().ray_shooting(xi.ravel(), eta.ravel(), self.kwargs_lens)
        model = _light_model("INTERPOL")
        out = []
        for kw in self.kwargs_bands:
            model.delete_interpol_caches()  # the cached interpolator is the previous band's
            out.append(model.surface_brightness(bx, by, [kw]) / model.total_flux([kw])[0])
        return np.stack(out).reshape((len(out),) + np.shape(xi))


def band_image_source(kwargs_lens: list, cube: np.ndarray, pixscale_arcsec: float,
                      angle_rad: float, centre: tuple[float, float]) -> BandLensedSource:
    """A lensed real galaxy from a (band, y, x) linear-flux cube, band by band."""
    half = 0.5 * max(cube.shape[1:]) * pixscale_arcsec * np.sqrt(2)
    kwargs = [dict(image=np.asarray(band, float), amp=1.0, center_x=centre[0],
                   center_y=centre[1], phi_G=float(angle_rad), scale=float(pixscale_arcsec))
              for band in cube]
    return BandLensedSource(kwargs_lens, kwargs, 1.5 * kwargs_lens[0]["theta_E"]
                            + np.hypot(*centre) + half + 0.3, pixscale_arcsec)


def draw_source(rng: np.random.Generator, lcfg: Mapping, kwargs_lens: list,
                images: Sequence[np.ndarray] = ()) -> tuple[LensedSource, dict]:
    """A source behind the lens from the ``training_set.lens`` priors: (shape, parameters).

    Position uniform in area within ``source_offset_max`` x theta_E of the lens centre.
    """
    theta_e = kwargs_lens[0]["theta_E"]
    beta = lcfg["source_offset_max"] * theta_e * np.sqrt(rng.uniform())
    phi = rng.uniform(0, 2 * np.pi)
    centre = (float(beta * np.cos(phi)), float(beta * np.sin(phi)))
    params = dict(source_mag=float(rng.uniform(*lcfg["source_mag"])),
                  source_slope=float(rng.uniform(*lcfg["source_colour_slope"])),
                  source_x_arcsec=centre[0], source_y_arcsec=centre[1])
    if images:
        k = int(rng.integers(len(images)))
        angle, pix = rng.uniform(0, 2 * np.pi), lcfg["source_image_pixscale_arcsec"]
        extra = {}
        if images[k].ndim == 3:  # per band: the galaxy's own colours, not the slope's
            shape = band_image_source(kwargs_lens, images[k], pix, angle, centre)
            extra = dict(band_ratio=images[k].sum(axis=(1, 2)))
        else:
            shape = image_source(kwargs_lens, images[k], pix, angle, centre)
        return shape, dict(params, source_image=k, clump_fraction=0.0, n_clumps=0,
                           source_r_e_arcsec=float("nan"), clump_slope=params["source_slope"],
                           **extra)
    r_e = _loguniform(rng, lcfg["source_r_e_arcsec"])
    q = float(rng.uniform(*lcfg["source_axis_ratio"]))
    angle = rng.uniform(0, np.pi)
    n_clumps = int(rng.integers(lcfg["n_clumps"][0], lcfg["n_clumps"][1] + 1))
    weights = rng.dirichlet(np.ones(n_clumps)) if n_clumps else np.zeros(0)
    clumps = [(centre[0] + rng.normal(0, r_e), centre[1] + rng.normal(0, r_e),
               _loguniform(rng, lcfg["clump_r_e_arcsec"]), float(w)) for w in weights]
    shape = sersic_source(kwargs_lens, r_e, float(rng.uniform(*lcfg["source_sersic_n"])), q,
                          angle, centre, clumps)
    return shape, dict(params, source_image=-1, source_r_e_arcsec=r_e, n_clumps=n_clumps,
                       clump_fraction=float(rng.uniform(*lcfg["clump_fraction"]))
                       if n_clumps else 0.0,
                       clump_slope=params["source_slope"]
                       + float(rng.uniform(*lcfg["clump_colour_shift"])))


def source_fluxes(params: Mapping, frame: Frame) -> np.ndarray:
    """(2, band) fluxes of the diffuse and clump parts: total AB ``source_mag`` in ref band.

    A per-band source (``params["band_ratio"]``, the cube's flux per band, linear in f_nu)
    gets a diagonal (band, band) matrix instead: band b has AB magnitude
    ``source_mag - 2.5 log10(ratio[b] / ratio[ref])`` through its own zero point.
    """
    if "band_ratio" in params:
        ratio = np.asarray(params["band_ratio"], dtype=float)
        with np.errstate(divide="ignore"):
            mags = params["source_mag"] - 2.5 * np.log10(ratio / ratio[frame.ref])
        flux = 10.0 ** (-0.4 * (mags - np.asarray(frame.zeropoint, dtype=float)))
        return np.diag(np.where(ratio > 0, flux, 0.0))
    f_c = params["clump_fraction"]
    diffuse = sed_flux(params["source_mag"], params["source_slope"], frame.lam_nm, frame.ref,
                       frame.zeropoint)
    clump = sed_flux(params["source_mag"], params["clump_slope"], frame.lam_nm, frame.ref,
                     frame.zeropoint)
    return np.vstack([(1.0 - f_c) * diffuse, f_c * clump])


def inject_lens(raw: np.ndarray, frame: Frame, lcfg: Mapping, supersample: int,
                rng: np.random.Generator, images: Sequence[np.ndarray] = ()
                ) -> tuple[np.ndarray, dict]:
    """Inject one lensed source into a raw cutout.

    The lens is drawn once; the source is redrawn up to ``lcfg["max_draws"]`` times until
    the arc S/N reaches ``arc_snr_min`` (else the best draw is kept, ``n_draws`` says so).
    Arc S/N is :func:`skysift.mock_render.snr` of the noiseless PSF-convolved arc against
    ``frame.sky_sigma``: sqrt(sum over bands and pixels of (arc / sigma_band)**2).

    Parameters
    ----------
    raw : (band, s, s) float32, the host cutout in image units (NaN where invalid).

    Returns
    -------
    image : (band, s, s) float32, raw + arc + the arc's Poisson noise (NaN stays NaN).
    params : theta_e_arcsec, source_mag (AB, reference band, unlensed), arc_snr,
        magnification (image-plane / unlensed source flux in the reference band, within
        the stamp and its PSF margin), arc_flux (reference band, image units), and the
        drawn lens and source parameters.
    """
    kwargs_lens, lens_params = draw_deflector(rng, lcfg)
    best, n_draws = None, 0
    while n_draws < int(lcfg["max_draws"]):
        n_draws += 1
        shape, src = draw_source(rng, lcfg, kwargs_lens, images)
        flux = source_fluxes(src, frame)
        arc, totals = render(shape, flux, frame, supersample)
        s = snr(arc, frame.sky_sigma)
        if best is None or s > best[2]:
            best = (arc, totals, s, src, flux)
        if s >= lcfg["arc_snr_min"]:
            break
    arc, totals, s, src, flux = best
    ref = flux[:, frame.ref]
    params = dict(lens_params, **src, arc_snr=float(s), n_draws=n_draws,
                  magnification=float(ref @ totals / ref.sum()),
                  arc_flux=float(arc[frame.ref].sum()))
    noisy = add_poisson(arc, frame.gain, rng)
    return (raw + noisy).astype(np.float32), params


def _read_source(path: str) -> np.ndarray:
    data = np.asarray(fits.getdata(path), dtype=float)
    if data.ndim not in (2, 3) or not np.isfinite(data).all() or data.sum() <= 0:
        raise SurveyError(f"{path}: a source image must be a finite 2-D (or band, y, x) "
                          "linear-flux array with a positive sum")
    return data


def load_source_images(pattern: str | None, bands: Sequence[str] | None = None
                       ) -> list[np.ndarray]:
    """Linear-flux source images (``training_set.lens.source_images``) matching a glob.

    2-D images are returned as they are (one template; colours from the SED slope). With
    ``bands`` (survey.bands), a (band, y, x) cube with one plane per band, or a pattern with
    ``{band}`` whose per-band files (sorted, one per galaxy and band) are stacked, gives a
    (band, y, x) cube lensed band by band; without ``bands`` cubes are summed over bands.
    """
    if not pattern:
        return []
    key = "training_set.lens.source_images"
    if "{band}" in pattern:
        if not bands:
            raise ConfigError(f"{key} '{pattern}' has {{band}} but no bands were given")
        per_band = [sorted(glob.glob(pattern.format(band=b))) for b in bands]
        counts = {b: len(p) for b, p in zip(bands, per_band, strict=True)}
        if len(set(counts.values())) != 1 or not per_band[0]:
            raise ConfigError(f"{key} '{pattern}': every band needs the same number (> 0) of "
                              f"files, found {counts}")
        images = []
        for paths in zip(*per_band, strict=True):
            planes = [_read_source(p) for p in paths]
            if any(p.ndim != 2 or p.shape != planes[0].shape for p in planes):
                raise SurveyError(f"{paths[0]}: the per-band source files {list(paths)} must "
                                  "be 2-D images of one shape")
            images.append(np.stack(planes))
        return images
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise ConfigError(f"{key} '{pattern}' matches no file")
    images = []
    for path in paths:
        data = _read_source(path)
        if data.ndim == 3 and bands is None:
            data = data.sum(axis=0)
        elif data.ndim == 3 and data.shape[0] != len(bands):
            raise SurveyError(f"{path}: a (band, y, x) source cube needs one plane per band "
                              f"of survey.bands {list(bands)}, got {data.shape[0]}; give 2-D "
                              "images or cubes in survey.bands order")
        images.append(data)
    return images

