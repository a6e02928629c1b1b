"""Light models and pixel rendering of the mock survey (pure numpy/scipy + lenstronomy).

Every object is modelled in local sky offsets from its catalog position, in arcsec:
``xi`` towards East (increasing RA), ``eta`` towards North. A tile's CD matrix in arcsec
per pixel, ``cd_arcsec`` (2, 2), maps a pixel offset (dx, dy) to (xi, eta); its local
linearity over a stamp is exact to ~1e-7 for TAN tiles of a few arcmin.

Two kinds of component are rendered into a (band, y, x) stamp in ADU:

* profiles (:class:`Sersic`, :class:`LensedSource`) are evaluated on an oversampled grid,
  integrated into pixels, then convolved with the band's Gaussian PSF sampled at pixel
  centres (``scipy.signal.fftconvolve``);
* Gaussian blobs (:class:`Blobs`: tidal features, stars as zero-width blobs) are rendered
  analytically: blob (x) PSF is a Gaussian, integrated over each pixel with ``erf``.

Ellipses follow lenstronomy: elliptical radius ``r = sqrt(q u**2 + v**2 / q)`` with ``u``
along the major axis, so ``r_e`` is the circularised effective radius; position angles
are degrees East of North.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gammainc, gammaln, ndtr

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: PSF kernels and stamp margins extend this many PSF sigmas.
PSF_TRUNC_SIGMA = 4.0
#: Sérsic centres: the (2r+1)**2 central pixels are integrated with this finer subsampling.
CUSP_HALF_PIX, CUSP_OVERSAMPLE = 2, 24


def sersic_b(n: float) -> float:
    """b_n of the Sérsic profile (Ciotti & Bertin 1999 expansion; n >= 0.36)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def _major_minor(xi: np.ndarray, eta: np.ndarray, pa_deg: float) -> tuple[np.ndarray, np.ndarray]:
    pa = np.radians(pa_deg)
    return xi * np.sin(pa) + eta * np.cos(pa), -xi * np.cos(pa) + eta * np.sin(pa)


@dataclass(frozen=True)
class Sersic:
    """Elliptical Sérsic profile truncated at ``rmax`` effective radii, unit total flux.

    The normalisation is analytic (truncated flux = 1) and so independent of the stamp.
    """

    xi0: float
    eta0: float
    r_e: float
    n: float
    q: float
    pa_deg: float
    rmax: float = 6.0

    n_parts = 1

    @property
    def extent_arcsec(self) -> float:
        return float(np.hypot(self.xi0, self.eta0) + self.rmax * self.r_e / np.sqrt(self.q))

    @property
    def scale_arcsec(self) -> float:
        return self.r_e / 4.0

    def evaluate(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Surface density (1, *xi.shape) per arcsec**2 at offsets ``xi, eta`` (arcsec)."""
        u, v = _major_minor(xi - self.xi0, eta - self.eta0, self.pa_deg)
        x = np.sqrt(self.q * u * u + v * v / self.q) / self.r_e
        b, two_n = sersic_b(self.n), 2.0 * self.n
        prof = np.exp(-b * (x ** (1.0 / self.n) - 1.0))
        prof[x > self.rmax] = 0.0
        log_total = np.log(2 * np.pi * self.n * self.r_e**2) + b + gammaln(two_n)
        frac = gammainc(two_n, b * self.rmax ** (1.0 / self.n))
        return (prof / (np.exp(log_total - two_n * np.log(b)) * frac))[None]


@dataclass(frozen=True)
class Blobs:
    """Circular Gaussian blobs (xi, eta, sigma in arcsec; weights summing to 1).

    One class for every chain of knots: the mock's tidal features and stars (zero-width
    blobs; :func:`render` integrates blob (x) PSF analytically) and the training
    simulators' tails, rings and arms (:mod:`skysift.sim.simulate`, rendered by
    :func:`skysift.sim.paint.render` through :meth:`evaluate_grid`, so sigma must be > 0 there).
    """

    xi: np.ndarray
    eta: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray

    n_parts = 1

    @property
    def extent_arcsec(self) -> float:
        return float(np.max(np.hypot(self.xi, self.eta) + PSF_TRUNC_SIGMA * self.sigma))

    @property
    def scale_arcsec(self) -> float:
        """The narrowest blob's sigma, arcsec (its smallest structure)."""
        return float(np.min(self.sigma))

    def evaluate(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Surface density (1, *xi.shape) per arcsec**2 at offsets ``xi, eta`` (arcsec)."""
        out = np.zeros(np.shape(xi))
        for x, y, s, w in zip(self.xi, self.eta, self.sigma, self.weight, strict=True):
            out += w / (2 * np.pi * s * s) * np.exp(-0.5 * ((xi - x) ** 2 + (eta - y) ** 2) / s**2)
        return out[None]

    def evaluate_grid(self, xa: np.ndarray, ya: np.ndarray) -> np.ndarray:
        """Surface density (1, ny, nx) on the grid xa x ya (separable: one matrix product)."""
        s = self.sigma[:, None]
        gx = np.exp(-0.5 * ((xa[None, :] - self.xi[:, None]) / s) ** 2)
        gy = np.exp(-0.5 * ((ya[None, :] - self.eta[:, None]) / s) ** 2)
        gy *= (self.weight / (2 * np.pi * self.sigma**2))[:, None]
        return (gy.T @ gx)[None]


@functools.cache
def _lens_model():
    from lenstronomy.LensModel.lens_model import LensModel
    return LensModel(["SIE", "SHEAR"])


@functools.cache
def light_model(*profiles: str):
    from lenstronomy.LightModel.light_model import LightModel
    return LightModel(list(profiles))


@dataclass(frozen=True)
class LensedSource:
    """A source lensed by an SIE + external shear centred on the object (lenstronomy).

    Two parts share the ray shooting: a diffuse ``SERSIC_ELLIPSE`` and star-forming clumps
    (``GAUSSIAN``), each normalised to unit *unlensed* flux, so a part's integral over the
    image plane is its magnification (``unit_integral``, measured by :func:`unit_totals`).
    ``diffuse_profile`` and ``clump_profile`` name other lenstronomy profiles (the training
    injections of :mod:`skysift.sim.inject` use other source models than the mock's lenses);
    clump ``amp`` values must then be total fluxes summing to 1.
    """

    kwargs_lens: list
    kwargs_diffuse: list
    kwargs_clumps: list
    extent_arcsec: float
    scale_arcsec: float
    unit_integral: np.ndarray = field(default_factory=lambda: np.ones(2))
    diffuse_profile: str = "SERSIC_ELLIPSE"
    clump_profile: str = "GAUSSIAN"

    n_parts = 2

    def evaluate(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Surface density (2, *xi.shape) per arcsec**2 of unit-flux diffuse and clump light."""
        bx, by = _lens_model().ray_shooting(xi.ravel(), eta.ravel(), self.kwargs_lens)
        diffuse = light_model(self.diffuse_profile)
        # INTERPOL caches the interpolator of the first image it saw: drop it, as the model
        # is shared by every source (a few ms per call; INTERPOL sources are user images)
        diffuse.delete_interpol_caches()
        norm = diffuse.total_flux(self.kwargs_diffuse)[0]
        d = diffuse.surface_brightness(bx, by, self.kwargs_diffuse) / norm
        clumps = light_model(*[self.clump_profile] * len(self.kwargs_clumps))
        c = clumps.surface_brightness(bx, by, self.kwargs_clumps)
        return np.stack([d, c]).reshape((2,) + xi.shape)


@dataclass(frozen=True)
class Component:
    """A shape and the flux (n_parts, band) in ADU of each of its unit-flux parts."""

    shape: Sersic | Blobs | LensedSource
    flux: np.ndarray

    def total_flux(self) -> np.ndarray:
        """Flux per band as imaged (lensed parts multiplied by their magnification)."""
        gain = getattr(self.shape, "unit_integral", np.ones(self.flux.shape[0]))
        return (self.flux * np.asarray(gain)[:, None]).sum(axis=0)


@dataclass(frozen=True)
class MockObject:
    """One catalogued object: its components, positioned relative to its catalog RA/Dec."""

    components: list

    @property
    def extent_arcsec(self) -> float:
        return max(c.shape.extent_arcsec for c in self.components)

    def total_flux(self) -> np.ndarray:
        """Total imaged flux per band, ADU."""
        return np.sum([c.total_flux() for c in self.components], axis=0)


def psf_sigma_pix(fwhm_arcsec: np.ndarray, cd_arcsec: np.ndarray) -> tuple[np.ndarray, float]:
    """PSF sigma per band in pixels, and the pixel scale (arcsec) of ``cd_arcsec``."""
    pixscale = float(np.sqrt(abs(np.linalg.det(cd_arcsec))))
    return np.asarray(fwhm_arcsec, dtype=float) * FWHM_TO_SIGMA / pixscale, pixscale


def stamp_half_size(extent_arcsec: float, pixscale: float, sigma_pix_max: float) -> int:
    """Half-size h (pixels) of the (2h+1)-pixel square stamp that holds an object's light."""
    return int(np.ceil(extent_arcsec / pixscale + PSF_TRUNC_SIGMA * sigma_pix_max)) + 1


def psf_kernel(sigma_pix: float) -> np.ndarray:
    """Gaussian PSF (2k+1, 2k+1) sampled at pixel centres, k = ceil(4 sigma), unit sum."""
    k = int(np.ceil(PSF_TRUNC_SIGMA * sigma_pix))
    g = np.exp(-0.5 * (np.arange(-k, k + 1) / sigma_pix) ** 2)
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def _subpixel_offsets(cx: int, cy: int, h: int, x0: float, y0: float, cd_arcsec: np.ndarray,
                      oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """(xi, eta) arcsec of subpixel centres of pixels cx-h..cx+h, cy-h..cy+h; (y, x) arrays."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    dx = ((cx + np.arange(-h, h + 1))[:, None] + sub[None, :]).ravel() - x0
    dy = ((cy + np.arange(-h, h + 1))[:, None] + sub[None, :]).ravel() - y0
    dx, dy = np.meshgrid(dx, dy)
    return cd_arcsec[0, 0] * dx + cd_arcsec[0, 1] * dy, cd_arcsec[1, 0] * dx + cd_arcsec[1, 1] * dy


def _profile_pixels(shape, cx: int, cy: int, x0: float, y0: float, cd_arcsec: np.ndarray,
                    pixscale: float, h_max: int) -> tuple[int, np.ndarray]:
    """Pixel-integrated unit images (n_parts, 2hc+1, 2hc+1) of a profile around (cx, cy)."""
    hc = min(int(np.ceil(shape.extent_arcsec / pixscale)) + 1, h_max)
    oversample = int(np.clip(np.ceil(pixscale / shape.scale_arcsec), 2, 6))
    xi, eta = _subpixel_offsets(cx, cy, hc, x0, y0, cd_arcsec, oversample)
    m = 2 * hc + 1
    units = shape.evaluate(xi, eta).reshape(shape.n_parts, m, oversample, m, oversample)
    units = units.sum(axis=(2, 4)) * (pixscale / oversample) ** 2
    if isinstance(shape, Sersic):  # a cusp: integrate the central pixels far more finely
        centre = np.linalg.solve(cd_arcsec, [shape.xi0, shape.eta0]) + (x0, y0)
        px, py = np.rint(centre).astype(int)
        r, fine = CUSP_HALF_PIX, CUSP_OVERSAMPLE
        if max(abs(px - cx), abs(py - cy)) + r <= hc:
            xi, eta = _subpixel_offsets(px, py, r, x0, y0, cd_arcsec, fine)
            block = shape.evaluate(xi, eta).reshape(1, 2 * r + 1, fine, 2 * r + 1, fine)
            ys, xs = py - cy + hc, px - cx + hc
            units[:, ys - r:ys + r + 1, xs - r:xs + r + 1] = (block.sum(axis=(2, 4))
                                                              * (pixscale / fine) ** 2)
    return hc, units


def _blob_pixels(blobs: Blobs, flux: np.ndarray, pos: tuple[float, float], lo: tuple[int, int],
                 n: int, cd_arcsec: np.ndarray, sigma_pix: np.ndarray) -> np.ndarray:
    """Blobs convolved with each band's PSF, integrated over the pixels of the n x n stamp
    whose first pixel is ``lo`` (x, y); the object is at pixel ``pos`` (x, y). (band, n, n)."""
    pixscale = np.sqrt(abs(np.linalg.det(cd_arcsec)))
    dxy = np.linalg.solve(cd_arcsec, np.vstack([blobs.xi, blobs.eta]))
    (px, py), (x_lo, y_lo) = dxy + np.reshape(pos, (2, 1)), lo
    edges = np.arange(n + 1) - 0.5
    out = np.empty((len(sigma_pix), n, n))
    for b, sig_psf in enumerate(sigma_pix):
        s = np.sqrt((blobs.sigma / pixscale) ** 2 + sig_psf**2)[:, None]
        gx = np.diff(ndtr((x_lo + edges[None, :] - px[:, None]) / s), axis=1)
        gy = np.diff(ndtr((y_lo + edges[None, :] - py[:, None]) / s), axis=1)
        out[b] = (gy * (blobs.weight * flux[b])[:, None]).T @ gx
    return out


def render(obj: MockObject, x0: float, y0: float, cd_arcsec: np.ndarray,
           fwhm_arcsec: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Render ``obj`` centred at 0-based pixel (x0, y0) of a frame with ``cd_arcsec``.

    Returns (x_lo, y_lo, image): image (band, n, n) float64 in ADU, PSF-convolved, whose
    pixel [:, 0, 0] is frame pixel (x_lo, y_lo). No noise.
    """
    sigma_pix, pixscale = psf_sigma_pix(fwhm_arcsec, cd_arcsec)
    h = stamp_half_size(obj.extent_arcsec, pixscale, sigma_pix.max())
    cx, cy, n = int(np.rint(x0)), int(np.rint(y0)), 2 * h + 1
    image = np.zeros((len(sigma_pix), n, n))
    profiles = [c for c in obj.components if not isinstance(c.shape, Blobs)]
    if profiles:
        for comp in profiles:
            hc, units = _profile_pixels(comp.shape, cx, cy, x0, y0, cd_arcsec, pixscale, h)
            inner = image[:, h - hc:h + hc + 1, h - hc:h + hc + 1]
            inner += np.einsum("kb,kyx->byx", comp.flux, units)
        for b, sig in enumerate(sigma_pix):
            image[b] = fftconvolve(image[b], psf_kernel(sig), mode="same")
    for comp in obj.components:
        if isinstance(comp.shape, Blobs):
            image += _blob_pixels(comp.shape, comp.flux[0], (x0, y0), (cx - h, cy - h), n,
                                  cd_arcsec, sigma_pix)
    return cx - h, cy - h, image


def add_into(tile: np.ndarray, x_lo: int, y_lo: int, image: np.ndarray) -> bool:
    """Add a (band, n, n) stamp into ``tile`` (band, ny, nx) at (x_lo, y_lo), clipped.

    Returns whether any pixel of the stamp fell on the tile.
    """
    ny, nx = tile.shape[1:]
    x0, x1 = max(x_lo, 0), min(x_lo + image.shape[2], nx)
    y0, y1 = max(y_lo, 0), min(y_lo + image.shape[1], ny)
    if x0 >= x1 or y0 >= y1:
        return False
    tile[:, y0:y1, x0:x1] += image[:, y0 - y_lo:y1 - y_lo, x0 - x_lo:x1 - x_lo]
    return True


def unit_totals(shape: LensedSource, pixscale: float) -> np.ndarray:
    """Image-plane integral (n_parts,) of a unit-flux lensed source: its magnifications."""
    cd = np.diag([-pixscale, pixscale])
    h = int(np.ceil(shape.extent_arcsec / pixscale)) + 1
    _, units = _profile_pixels(shape, 0, 0, 0.0, 0.0, cd, pixscale, h)
    return units.sum(axis=(1, 2))


def snr(image: np.ndarray, sky_sigma: np.ndarray) -> float:
    """Matched-filter S/N of a noiseless (band, y, x) image: sqrt(sum (pix / sigma_band)**2)."""
    return float(np.sqrt(np.sum((image / np.asarray(sky_sigma)[:, None, None]) ** 2)))
