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

import dataclasses
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
    simulators' tails, rings and arms (:mod:`skysift.simulate`, rendered by
    :func:`skysift.inject.render` through :meth:`evaluate_grid`, so sigma must be > 0 there).
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
def _light_model(*profiles: str):
    from lenstronomy.LightModel.light_model import LightModel
    return LightModel(list(profiles))


@dataclass(frozen=True)
class LensedSource:
    """A source lensed by an SIE + external shear centred on the object (lenstronomy).

    Two parts share the ray shooting: a diffuse ``SERSIC_ELLIPSE`` and star-forming clumps
    (``GAUSSIAN``), each normalised to unit *unlensed* flux, so a part's integral over the
    image plane is its magnification (``unit_integral``, measured by :func:`unit_totals`).
    ``diffuse_profile`` and ``clump_profile`` name other lenstronomy profiles (the training
    injections of :mod:`skysift.inject` use other source models than the mock's lenses);
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
        diffuse = _light_model(self.diffuse_profile)
        # INTERPOL caches the interpolator of the first image it saw: drop it, as the model
        # is shared by every source (a few ms per call; INTERPOL sources are user images)
        diffuse.delete_interpol_caches()
        norm = diffuse.total_flux(self.kwargs_diffuse)[0]
        d = diffuse.surface_brightness(bx, by, self.kwargs_diffuse) / norm
        clumps = _light_model(*[self.clump_profile] * len(self.kwargs_clumps))
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


# --- object models: what a star, a field galaxy, a lens and a merger look like ----------

#: Effective wavelengths (nm) of common band names; colours are interpolated in log(lambda).
BAND_WAVELENGTH_NM = {"u": 355.0, "g": 475.0, "r": 622.0, "i": 763.0, "z": 905.0, "y": 1000.0,
                      "Y": 1000.0, "J": 1250.0, "H": 1650.0, "K": 2200.0, "Ks": 2150.0}
#: (mean, sd) of the g-r and r-i colours of each population.
COLOURS = {"red": ((1.25, 0.08), (0.45, 0.04)), "blue": ((0.55, 0.15), (0.25, 0.06)),
           "source": ((0.30, 0.10), (0.12, 0.05)), "clump": ((0.05, 0.08), (0.0, 0.05)),
           "tidal": ((0.45, 0.10), (0.20, 0.05))}
STAGES = ("pair", "interacting", "coalescing")
MAX_SOURCE_DRAWS = 8


@dataclass(frozen=True)
class Photometry:
    """Magnitudes to ADU fluxes: zero point and band wavelengths (band,) in nm."""

    zeropoint: float
    lam_nm: np.ndarray

    def flux(self, mag_r: float, gr: float, ri: float) -> np.ndarray:
        """Flux (band,) in ADU of an SED with r magnitude and g-r, r-i colours.

        mag_band - mag_r is linear in log(lambda): slope g-r blueward of r, r-i redward.
        """
        lam = np.log(self.lam_nm / BAND_WAVELENGTH_NM["r"])
        blue = gr * lam / np.log(BAND_WAVELENGTH_NM["g"] / BAND_WAVELENGTH_NM["r"])
        red = -ri * lam / np.log(BAND_WAVELENGTH_NM["i"] / BAND_WAVELENGTH_NM["r"])
        return 10.0 ** (-0.4 * (mag_r + np.where(lam < 0, blue, red) - self.zeropoint))


@dataclass(frozen=True)
class Context:
    """What the object models need: photometry, the mock config and the S/N frame."""

    phot: Photometry
    mock: dict
    cd_arcsec: np.ndarray  # canonical axis-aligned frame at the mock pixel scale
    fwhm_arcsec: np.ndarray  # (band,)
    sky_sigma: np.ndarray  # (band,) ADU


def _colour(rng: np.random.Generator, population: str) -> tuple[float, float]:
    (m1, s1), (m2, s2) = COLOURS[population]
    return float(rng.normal(m1, s1)), float(rng.normal(m2, s2))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def counts_mag(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A magnitude drawn from galaxy number counts, p(m) ~ 10**(0.3 m) on [lo, hi]."""
    a, b = 10.0 ** (0.3 * lo), 10.0 ** (0.3 * hi)
    return float(np.log10(a + rng.uniform() * (b - a)) / 0.3)


def galaxy_shape(rng: np.random.Generator, red: bool, mag_r: float, xi0: float = 0.0,
                 eta0: float = 0.0) -> Sersic:
    """Sérsic shape of a red elliptical (n 2.5-4) or blue disc (n 0.5-1.5); brighter is bigger."""
    t = np.clip(0.55 * (23.0 - mag_r) / 5.0 + 0.45 * rng.uniform(), 0.0, 1.0)
    r_e = float(np.exp(np.log(0.3) + t * np.log(1.5 / 0.3)))
    n = rng.uniform(2.5, 4.0) if red else rng.uniform(0.5, 1.5)
    q = rng.uniform(0.6, 1.0) if red else rng.uniform(0.25, 1.0)
    return Sersic(xi0, eta0, r_e, float(n), float(q), float(rng.uniform(0.0, 180.0)))


def make_star(rng: np.random.Generator, ctx: Context) -> tuple[MockObject, dict]:
    """A point source, r 16-23, stellar-locus colours."""
    gr = rng.uniform(0.3, 1.5)
    ri = 0.1 + 0.45 * (gr - 0.3) + rng.normal(0.0, 0.05)
    blob = Blobs(np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1))
    return MockObject([Component(blob, ctx.phot.flux(rng.uniform(16.0, 23.0), gr, ri)[None])]), {}


def make_galaxy(rng: np.random.Generator, ctx: Context) -> tuple[MockObject, dict]:
    """A field galaxy: 35% red ellipticals, 65% blue discs, r 18-23 from number counts."""
    red = rng.uniform() < 0.35
    mag = counts_mag(rng, 18.0, 23.0)
    flux = ctx.phot.flux(mag, *_colour(rng, "red" if red else "blue"))
    return MockObject([Component(galaxy_shape(rng, red, mag), flux[None])]), {}


def _draw_source(rng: np.random.Generator, kwargs_lens: list, theta_e: float,
                 ctx: Context) -> tuple[Component, float, np.ndarray]:
    """A blue Sérsic source plus 2-4 clumps behind the lens: (arc, r mag, r flux fractions)."""
    mag = rng.uniform(*ctx.mock["lens"]["source_mag_r"])
    r_src = _loguniform(rng, 0.1, 0.35)
    beta, ang = theta_e * 0.35 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    bx, by = beta * np.cos(ang), beta * np.sin(ang)
    q, phi = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    e1, e2 = (1 - q) / (1 + q) * np.cos(2 * phi), (1 - q) / (1 + q) * np.sin(2 * phi)
    diffuse = [dict(amp=1.0, R_sersic=r_src, n_sersic=rng.uniform(0.7, 1.5), e1=e1, e2=e2,
                    center_x=bx, center_y=by)]
    n_clumps = int(rng.integers(2, 5))
    w = rng.dirichlet(np.ones(n_clumps))
    clumps = [dict(amp=float(w[j]), sigma=rng.uniform(0.05, 0.1),
                   center_x=bx + rng.normal(0, r_src), center_y=by + rng.normal(0, r_src))
              for j in range(n_clumps)]
    shape = LensedSource(kwargs_lens, diffuse, clumps, 1.3 * theta_e + beta + 4 * r_src + 0.3,
                         min(r_src / 1.5, 0.06))
    f_clump = rng.uniform(0.15, 0.35)
    flux = np.vstack([(1 - f_clump) * ctx.phot.flux(mag, *_colour(rng, "source")),
                      f_clump * ctx.phot.flux(mag, *_colour(rng, "clump"))])
    return Component(shape, flux), float(mag), np.array([1 - f_clump, f_clump])


def _arc_snr(arc: Component, ctx: Context) -> float:
    _, _, image = render(MockObject([arc]), 0.0, 0.0, ctx.cd_arcsec, ctx.fwhm_arcsec)
    return snr(image, ctx.sky_sigma)


def make_lens(rng: np.random.Generator, ctx: Context) -> tuple[MockObject, dict]:
    """A red elliptical deflector (SIE + shear) with a lensed blue source.

    The arc S/N is :func:`snr` of the noiseless PSF-convolved lensed source alone, against
    sky noise only, on an axis-aligned frame at the mock pixel scale centred on a pixel.
    Sources are redrawn up to MAX_SOURCE_DRAWS times until it reaches lens.arc_snr_min;
    then the best draw is brightened to reach it (source_mag_r may then leave its range).
    """
    mag_d = rng.uniform(18.0, 20.5)
    deflector = galaxy_shape(rng, True, mag_d)
    theta_e = rng.uniform(*ctx.mock["lens"]["theta_e_arcsec"])
    q_m = float(np.clip(deflector.q + rng.normal(0, 0.05), 0.5, 0.98))
    phi_m = np.radians(90.0 - deflector.pa_deg - rng.normal(0, 10.0))  # from the East axis
    gamma, phi_g = rng.uniform(0.0, 0.05), rng.uniform(0, np.pi)
    kwargs_lens = [dict(theta_E=theta_e, e1=(1 - q_m) / (1 + q_m) * np.cos(2 * phi_m),
                        e2=(1 - q_m) / (1 + q_m) * np.sin(2 * phi_m), center_x=0.0, center_y=0.0),
                   dict(gamma1=gamma * np.cos(2 * phi_g), gamma2=gamma * np.sin(2 * phi_g),
                        ra_0=0.0, dec_0=0.0)]
    snr_min = ctx.mock["lens"]["arc_snr_min"]
    best = None
    for _ in range(MAX_SOURCE_DRAWS):
        arc, mag_s, frac_r = _draw_source(rng, kwargs_lens, theta_e, ctx)
        s = _arc_snr(arc, ctx)
        if best is None or s > best[2]:
            best = (arc, mag_s, s, frac_r)
        if s >= snr_min:
            break
    arc, mag_s, s, frac_r = best
    brightened = s < snr_min
    if brightened:
        factor = snr_min / max(s, 1e-12) * (1 + 1e-6)
        arc = Component(arc.shape, arc.flux * factor)
        mag_s, s = mag_s - 2.5 * np.log10(factor), s * factor
    pixscale = float(np.sqrt(abs(np.linalg.det(ctx.cd_arcsec))))
    mu = unit_totals(arc.shape, pixscale)
    arc = Component(dataclasses.replace(arc.shape, unit_integral=mu), arc.flux)
    red = _colour(rng, "red")
    obj = MockObject([Component(deflector, ctx.phot.flux(mag_d, *red)[None]), arc])
    return obj, dict(theta_e_arcsec=theta_e, arc_snr=s, source_mag_r=mag_s, brightened=brightened,
                     magnification=float(frac_r @ mu))


def _arc_points(centre: tuple[float, float], radius: np.ndarray, angle: np.ndarray):
    """Points at ``radius`` (arcsec) and position angle ``angle`` (rad, E of N) from centre."""
    return centre[0] + radius * np.sin(angle), centre[1] + radius * np.cos(angle)


def _tails(rng: np.random.Generator, bases: list, starts: list, r0: list, hosts: np.ndarray,
           length_scale: float) -> tuple[np.ndarray, ...]:
    """Two curved tidal tails (chains of growing, fading Gaussian blobs along spirals)."""
    sense, t = rng.choice([-1.0, 1.0]), np.linspace(0.0, 1.0, 16)
    xs, ys, sig, w = [], [], [], []
    for base, a0, r_start, host in zip(bases, starts, r0, hosts, strict=True):
        length, curl = rng.uniform(2.0, 5.0) * length_scale, sense * rng.uniform(0.8, 2.0)
        x, y = _arc_points(base, r_start + length * t, a0 + curl * t)
        xs.append(x)
        ys.append(y)
        sig.append(rng.uniform(0.15, 0.25) * (1 + t))
        wt = np.exp(-1.5 * t) * rng.uniform(0.5, 1.5, t.size)
        w.append(host * wt / wt.sum())
    return tuple(np.concatenate(a) for a in (xs, ys, sig, w))


def _shells(rng: np.random.Generator, r_e: float) -> Blobs:
    """2-4 concentric partial shells around the primary on alternating sides."""
    xs, ys, sig, w = [], [], [], []
    psi0, sigma = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.18)
    for k in range(int(rng.integers(2, 5))):
        radius = min(r_e * rng.uniform(1.5, 2.0) * 1.5**k, 6.0)
        half = rng.uniform(0.6, 1.2)
        n = int(np.ceil(2 * half * radius / (0.7 * sigma)))
        x, y = _arc_points((0.0, 0.0), np.full(n, radius),
                           psi0 + k * np.pi + rng.normal(0, 0.3) + np.linspace(-half, half, n))
        xs.append(x)
        ys.append(y)
        sig.append(np.full(n, sigma))
        w.append(np.full(n, np.exp(-0.5 * k) / n))
    w = np.concatenate(w)
    return Blobs(np.concatenate(xs), np.concatenate(ys), np.concatenate(sig), w / w.sum())


def make_merger(rng: np.random.Generator, ctx: Context) -> tuple[MockObject, dict]:
    """A primary at the catalog position and a secondary galaxy with stage features.

    Secondary/primary flux ratio uniform in merger.mass_ratio; separation uniform in
    merger.separation_arcsec (coalescing: its lowest 35%). "pair": two undisturbed
    galaxies; "interacting": two curved tidal tails (10-25% of the light) and a bridge;
    "coalescing": tails from the common centre plus shells around the primary.
    """
    m = ctx.mock["merger"]
    stage = STAGES[int(rng.integers(len(STAGES)))]
    lo, hi = m["separation_arcsec"]
    sep = rng.uniform(lo, hi if stage != "coalescing" else lo + 0.35 * (hi - lo))
    ratio, phi = rng.uniform(*m["mass_ratio"]), rng.uniform(0, 2 * np.pi)
    sx, sy = sep * np.sin(phi), sep * np.cos(phi)
    red_p = rng.uniform() < 0.4
    mag_p = counts_mag(rng, 18.0, 21.5)
    mag_s = mag_p - 2.5 * np.log10(ratio)
    prim = galaxy_shape(rng, red_p, mag_p)
    sec = galaxy_shape(rng, rng.uniform() < 0.3, mag_s, sx, sy)
    col_p = _colour(rng, "red" if red_p else "blue")
    comps = [Component(prim, ctx.phot.flux(mag_p, *col_p)[None]),
             Component(sec, ctx.phot.flux(mag_s, *_colour(rng, "blue"))[None])]
    mag_pair = mag_p - 2.5 * np.log10(1 + ratio)
    hosts = np.array([1.0, np.sqrt(ratio)]) / (1 + np.sqrt(ratio))
    if stage == "interacting":
        f_tail, f_bridge = rng.uniform(0.10, 0.25), rng.uniform(0.03, 0.08)
        x, y, s, w = _tails(rng, [(0.0, 0.0), (sx, sy)], [phi + np.pi, phi],
                            [prim.r_e, sec.r_e], hosts, 1.0)
        t = np.linspace(0.15, 0.85, 8)
        bow = rng.uniform(-0.25, 0.25) * sep * np.sin(np.pi * t)
        bx, by = t * sx + bow * np.cos(phi), t * sy - bow * np.sin(phi)
        tidal = Blobs(np.r_[x, bx], np.r_[y, by], np.r_[s, rng.uniform(0.15, 0.2, t.size)],
                      np.r_[f_tail * w, np.full(t.size, f_bridge / t.size)] / (f_tail + f_bridge))
        f_tidal = f_tail + f_bridge
    elif stage == "coalescing":
        f_tidal, psi = rng.uniform(0.10, 0.25), rng.uniform(0, 2 * np.pi)
        centre = (sx * ratio / (1 + ratio), sy * ratio / (1 + ratio))
        tidal = Blobs(*_tails(rng, [centre] * 2, [psi, psi + np.pi], [prim.r_e] * 2, hosts, 1.2))
        f_shell = rng.uniform(0.05, 0.12)
        comps.append(Component(_shells(rng, prim.r_e),
                               ctx.phot.flux(mag_pair - 2.5 * np.log10(f_shell), *col_p)[None]))
    if stage != "pair":
        comps.append(Component(tidal, ctx.phot.flux(mag_pair - 2.5 * np.log10(f_tidal),
                                                    *_colour(rng, "tidal"))[None]))
    return MockObject(comps), dict(merger_mass_ratio=ratio, merger_stage=stage,
                                   merger_separation_arcsec=sep)
