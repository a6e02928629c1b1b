"""survey2 rendering: the instrument (HSC-like bands, PSF, depth) and light profiles in a tile.

Every light profile is a surface brightness of unit total flux, in arcsec^-2, evaluated at
local sky offsets ``(u, v)`` in arcsec from the system's centre (``u`` towards East, ``v``
towards North; position angles in radians from ``u`` towards ``v``). A system is rendered
into a tile by mapping the tile's supersampled pixel grid to ``(u, v)`` through the tile's
CD matrix, ray-tracing it through the lens (lenstronomy) when the system has one, and
convolving with the tile band's Moffat PSF. Nothing here imports skysift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from lenstronomy.LensModel.lens_model import LensModel
from scipy.signal import fftconvolve
from scipy.special import binom, erf, gamma, gammaincinv

BANDS = ("g", "r", "i", "z", "y")
PIXSCALE = 0.168  #: arcsec per pixel
ZEROPOINT = 27.0  #: AB zero point of the tiles (HSC coadds)
MOFFAT_BETA = 3.5
PSF_FWHM = np.array([0.75, 0.70, 0.60, 0.65, 0.70])  #: nominal FWHM per band, arcsec
DEPTH_5SIG = np.array([26.5, 26.1, 25.9, 25.1, 24.4])  #: 5-sigma point-source AB depth
SKY_MU = np.array([22.1, 21.2, 20.3, 19.4, 18.7])  #: sky brightness, AB mag arcsec^-2
NOISE_KERNEL_SIGMA = 0.5  #: pixels; Gaussian that correlates the coadd noise (neighbours ~0.27)
SUPERSAMPLE = 3  #: subpixels per pixel side (4 for lensed systems)
_LENS_MODEL = LensModel(["SIE", "SHEAR"])


@dataclass
class Component:
    """One light component of a system.

    Attributes
    ----------
    shape : ``sersic``, ``gauss``, ``ring``, ``spiral``, ``blobs`` or ``point``.
    params : keyword arguments of the profile function (arcsec, radians).
    flux : (5,) total flux per band in image units (AB zero point 27).
    owner : index of the catalogue entry of the system this light belongs to.
    role : ``body``, ``arc`` (lensed source) or ``tidal``; S/N is measured per role.
    lensed : evaluate the profile in the source plane of the system's lens.
    """

    shape: str
    params: dict
    flux: np.ndarray
    owner: int = 0
    role: str = "body"
    lensed: bool = False


@dataclass
class System:
    """Objects rendered together: one catalogue object, or a lens, merger or projection.

    Attributes
    ----------
    kind : what the system is (``elliptical``, ``lens``, ``merger``, ``star``, ...).
    ra, dec : centre, degrees.
    extent : radius beyond which its light is tapered to zero, arcsec.
    components : its light.
    entries : catalogue entries, dicts with ``u``, ``v`` (arcsec offsets from the centre),
        ``kind``, ``is_lens``, ``is_merger``; empty for uncatalogued faint galaxies.
    truth : parameters written to truth.fits (theta_e, stage, ...).
    lens : lenstronomy keyword arguments of the SIE and the shear, or None.
    home : index of the tile whose objects it belongs to.
    """

    kind: str
    ra: float
    dec: float
    extent: float
    components: list[Component]
    entries: list[dict] = field(default_factory=list)
    truth: dict = field(default_factory=dict)
    lens: list[dict] | None = None
    home: int = 0


def mag_to_flux(mag: np.ndarray | float) -> np.ndarray:
    """Image units (zero point :data:`ZEROPOINT`) of AB magnitudes ``mag`` (any shape)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - ZEROPOINT))


def _rotate(u: np.ndarray, v: np.ndarray, u0: float, v0: float,
            pa: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from ``(u0, v0)`` along the major axis at ``pa`` and along the minor axis."""
    c, s = np.cos(pa), np.sin(pa)
    du, dv = u - u0, v - v0
    return c * du + s * dv, -s * du + c * dv


def sersic_sb(u: np.ndarray, v: np.ndarray, re: float, n: float, q: float, pa: float,
              u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Elliptical Sérsic of unit flux: ``re`` semi-major half-light radius (arcsec), index
    ``n``, axis ratio ``q``; arcsec^-2 at ``(u, v)`` (arrays of one shape, arcsec)."""
    x, y = _rotate(u, v, u0, v0, pa)
    r = np.sqrt(x * x + (y / q) ** 2)
    b = gammaincinv(2 * n, 0.5)
    total = 2 * np.pi * n * q * re**2 * np.exp(b) * gamma(2 * n) / b ** (2 * n)
    return np.exp(-b * ((r / re) ** (1.0 / n) - 1.0)) / total


def gauss_sb(u: np.ndarray, v: np.ndarray, sigma: float, q: float = 1.0, pa: float = 0.0,
             u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Elliptical Gaussian of unit flux, major-axis ``sigma`` (arcsec); arcsec^-2."""
    x, y = _rotate(u, v, u0, v0, pa)
    return np.exp(-0.5 * (x * x + (y / q) ** 2) / sigma**2) / (2 * np.pi * sigma**2 * q)


def ring_sb(u: np.ndarray, v: np.ndarray, radius: float, width: float, q: float, pa: float,
            u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Gaussian annulus of unit flux at elliptical radius ``radius`` (arcsec), ``width``
    its Gaussian sigma (arcsec); arcsec^-2."""
    x, y = _rotate(u, v, u0, v0, pa)
    r = np.sqrt(x * x + (y / q) ** 2)
    a = radius / (np.sqrt(2) * width)
    norm = 2 * np.pi * q * (width**2 * np.exp(-a * a)
                            + radius * width * np.sqrt(np.pi / 2) * (1 + erf(a)))
    return np.exp(-0.5 * ((r - radius) / width) ** 2) / norm


def spiral_norm(h: float, r_in: float) -> float:
    """Flux of ``exp(-r/h) (1 - exp(-(r/r_in)^2))`` over a face-on plane (arcsec^2)."""
    r = np.linspace(0.0, 12 * h, 4000)
    y = np.exp(-r / h) * (1 - np.exp(-((r / r_in) ** 2))) * 2 * np.pi * r
    return float(np.sum((y[1:] + y[:-1]) * np.diff(r)) / 2)


def spiral_sb(u: np.ndarray, v: np.ndarray, h: float, q: float, pa: float, arms: int, pitch: float,
              phase: float, sharp: int, r_in: float, norm: float, u0: float = 0.0,
              v0: float = 0.0) -> np.ndarray:
    """Logarithmic spiral arms of unit flux on an exponential disc of scale length ``h``.

    The arm pattern ``((1 + cos(m (theta - phi(r)))) / 2)^sharp`` (mean 1 over theta) with
    ``phi = ln(r / h) / tan(pitch) + phase`` rides on the disc, faded in beyond ``r_in``;
    ``norm`` is :func:`spiral_norm` (h, r_in). Arcsec^-2 at ``(u, v)`` (arcsec).
    """
    x, y = _rotate(u, v, u0, v0, pa)
    y = y / q
    r = np.sqrt(x * x + y * y)
    theta = np.arctan2(y, x)
    phi = np.log(np.maximum(r, 1e-3) / h) / np.tan(pitch) + phase
    pattern = ((1 + np.cos(arms * (theta - phi))) / 2) ** sharp / (binom(2 * sharp, sharp)
                                                                    / 4.0**sharp)
    disc = np.exp(-r / h) * (1 - np.exp(-((r / r_in) ** 2)))
    return disc * pattern / (norm * q)


def edgeon_sb(u: np.ndarray, v: np.ndarray, re: float, q: float, pa: float, lane_depth: float,
              lane_width: float, u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Exponential disc (n = 1 Sérsic) dimmed along its mid-plane by a dust lane of relative
    depth ``lane_depth`` and Gaussian half-thickness ``lane_width`` (arcsec); arcsec^-2."""
    x, y = _rotate(u, v, u0, v0, pa)
    lane = 1.0 - lane_depth * np.exp(-0.5 * (y / lane_width) ** 2)
    return sersic_sb(u, v, re, 1.0, q, pa, u0, v0) * lane


def psf_image(fwhm_pix: float, n: int, dx: float = 0.0, dy: float = 0.0,
              beta: float = MOFFAT_BETA, ss: int = 5) -> np.ndarray:
    """Pixel-integrated Moffat PSF of unit flux.

    Parameters
    ----------
    fwhm_pix : FWHM, pixels.
    n : odd side of the grid, pixels.
    dx, dy : centre's offset from the central pixel, pixels.
    beta : Moffat index.
    ss : subpixels per pixel side of the integration.

    Returns
    -------
    (n, n) fraction of the flux in each pixel (the flux beyond the grid is lost).
    """
    alpha = fwhm_pix / (2 * np.sqrt(2 ** (1 / beta) - 1))
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    axis = (np.arange(n) - n // 2)[:, None] + sub[None, :]
    xx, yy = np.meshgrid(axis.ravel() - dx, axis.ravel() - dy)
    prof = (beta - 1) / (np.pi * alpha**2) * (1 + (xx * xx + yy * yy) / alpha**2) ** -beta
    return prof.reshape(n, ss, n, ss).mean(axis=(1, 3))


def psf_kernels(fwhm_arcsec: np.ndarray) -> np.ndarray:
    """(5, k, k) PSF convolution kernels of the bands, each summing to 1; ``fwhm_arcsec`` (5,)."""
    fwhm_pix = np.asarray(fwhm_arcsec) / PIXSCALE
    k = 2 * int(np.ceil(3.5 * fwhm_pix.max())) + 1
    kernels = np.stack([psf_image(f, k) for f in fwhm_pix])
    return kernels / kernels.sum(axis=(1, 2), keepdims=True)


@dataclass
class Frame:
    """A tile's view of the sky around one system.

    Attributes
    ----------
    cd : (2, 2) arcsec per pixel: ``(u, v) = cd @ (dx, dy)`` for pixel offsets (dx, dy).
    kernels : (5, k, k) PSF kernels (:func:`psf_kernels`).
    fwhm_arcsec : (5,) PSF FWHM per band, arcsec.
    """

    cd: np.ndarray
    kernels: np.ndarray
    fwhm_arcsec: np.ndarray


@dataclass
class Stamp:
    """A rendered system: pixel (x0, y0) of its corner in the tile, (5, n, n) convolved light
    per role, the (n_owners, 5) pre-PSF flux of each catalogue entry and the (5,) pre-PSF
    flux of each role."""

    x0: int
    y0: int
    roles: dict[str, np.ndarray]
    owner_flux: np.ndarray
    role_flux: dict[str, np.ndarray]

    def total(self) -> np.ndarray:
        """(5, n, n) light of every role."""
        return sum(self.roles.values())


def _grid(x: float, y: float, half: int, cd: np.ndarray,
          ss: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Supersampled (u, v) arcsec of a (2 half + 1)^2 stamp about pixel (x, y): (ix0, iy0,
    u, v) with u, v of shape ((2 half + 1) ss, (2 half + 1) ss), rows along y."""
    ix, iy = int(round(x)), int(round(y))
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    steps = np.arange(2 * half + 1)[:, None] + sub[None, :]
    dx, dy = np.meshgrid((ix - half + steps).ravel() - x, (iy - half + steps).ravel() - y)
    return ix - half, iy - half, cd[0, 0] * dx + cd[0, 1] * dy, cd[1, 0] * dx + cd[1, 1] * dy


def _blobs(u: np.ndarray, v: np.ndarray, cd: np.ndarray, ss: int, u0: np.ndarray, v0: np.ndarray,
           sigma: np.ndarray, q: np.ndarray, pa: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum of weighted unit Gaussians (arrays ``u0`` ... ``w`` of one length, arcsec), each
    evaluated only within 5 sigma of its centre on the grid (u, v) of :func:`_grid`."""
    out = np.zeros_like(u)
    inv = np.linalg.inv(cd)
    # (u, v) of supersampled pixel (row j, col i) is affine in (i, j): invert that map
    o = inv @ np.array([u[0, 0], v[0, 0]])
    n = u.shape[0]
    for k in range(len(w)):
        px, py = (inv @ np.array([u0[k], v0[k]]) - o) * ss
        r = 5 * sigma[k] / PIXSCALE * ss
        i0, i1 = max(int(px - r), 0), min(int(px + r) + 2, n)
        j0, j1 = max(int(py - r), 0), min(int(py + r) + 2, n)
        if i0 >= i1 or j0 >= j1:
            continue
        out[j0:j1, i0:i1] += w[k] * gauss_sb(u[j0:j1, i0:i1], v[j0:j1, i0:i1], sigma[k],
                                             q[k], pa[k], u0[k], v0[k])
    return out


_PROFILES = {"sersic": sersic_sb, "gauss": gauss_sb, "ring": ring_sb, "spiral": spiral_sb,
             "edgeon": edgeon_sb}


def _taper(u: np.ndarray, v: np.ndarray, extent: float) -> np.ndarray:
    """1 within 0.75 ``extent`` of the centre, falling as cos^2 to 0 at ``extent`` (arcsec)."""
    t = np.clip((np.hypot(u, v) / extent - 0.75) / 0.25, 0.0, 1.0)
    return np.cos(0.5 * np.pi * t) ** 2


def _unit_image(comp: Component, u: np.ndarray, v: np.ndarray, bu: np.ndarray | None,
                bv: np.ndarray | None, cd: np.ndarray, ss: int) -> np.ndarray:
    """Surface brightness (arcsec^-2) of ``comp`` on the supersampled grid."""
    if comp.shape == "blobs":
        return _blobs(u, v, cd, ss, **comp.params)
    if comp.lensed:
        return _PROFILES[comp.shape](bu, bv, **comp.params)
    return _PROFILES[comp.shape](u, v, **comp.params)


def render_system(system: System, x: float, y: float, frame: Frame) -> Stamp:
    """Render a system into a tile's pixel grid.

    Parameters
    ----------
    system : what to render; its profiles are evaluated at (u, v) arcsec from its centre.
    x, y : tile pixel (0-based) of the system's centre.
    frame : the tile's CD matrix and PSF.

    Returns
    -------
    A (2 h + 1)^2 stamp about pixel (round(x), round(y)), h = extent / pixel scale plus the
    PSF kernel's half size: light per role convolved with the PSF (stars drawn as the PSF
    itself), image units per pixel, plus pre-PSF fluxes per catalogue entry and role.
    """
    khalf = frame.kernels.shape[-1] // 2
    half = int(np.ceil(system.extent / PIXSCALE)) + khalf
    ss = SUPERSAMPLE + (system.lens is not None)
    x0, y0, u, v = _grid(x, y, half, frame.cd, ss)
    n = 2 * half + 1
    bu = bv = None
    if system.lens is not None:
        bu, bv = _LENS_MODEL.ray_shooting(u, v, system.lens)
    pix_area = abs(np.linalg.det(frame.cd))
    taper = _taper(u, v, system.extent)
    n_owner = max(1, len(system.entries))
    owner_flux = np.zeros((n_owner, len(BANDS)))
    raw: dict[str, np.ndarray] = {}
    role_flux: dict[str, np.ndarray] = {}
    points = np.zeros((len(BANDS), n, n))
    for comp in system.components:
        if comp.shape == "point":
            img = np.stack([psf_image(f / PIXSCALE, n, x - round(x), y - round(y))
                            for f in frame.fwhm_arcsec])
            points += comp.flux[:, None, None] * img
            owner_flux[comp.owner] += comp.flux * img.sum(axis=(1, 2))
            continue
        sb = _unit_image(comp, u, v, bu, bv, frame.cd, ss) * taper
        unit = sb.reshape(n, ss, n, ss).mean(axis=(1, 3)) * pix_area
        raw.setdefault(comp.role, np.zeros((len(BANDS), n, n)))
        raw[comp.role] += comp.flux[:, None, None] * unit
        owner_flux[comp.owner] += comp.flux * unit.sum()
        role_flux[comp.role] = role_flux.get(comp.role, 0.0) + comp.flux * unit.sum()
    roles = {role: np.stack([fftconvolve(img[b], frame.kernels[b], mode="same")
                             for b in range(len(BANDS))]) for role, img in raw.items()}
    if points.any():
        roles["body"] = roles.get("body", 0) + points
    return Stamp(x0, y0, roles, owner_flux, role_flux)


def role_snr(stamp: Stamp, role: str, sigma_white: np.ndarray) -> float:
    """Optimal (matched-filter) S/N of the light of ``role`` alone over all bands:
    ``sqrt(sum_b sum_pix (s / sigma_b)^2)``, ``sigma_white`` (5,) the white-noise-equivalent
    sky sigma per pixel (the large-scale depth of the correlated noise); 0 without it."""
    img = stamp.roles.get(role)
    if img is None:
        return 0.0
    return float(np.sqrt(np.sum((img / np.asarray(sigma_white)[:, None, None]) ** 2)))


def add_stamp(image: np.ndarray, stamp: Stamp) -> None:
    """Add the stamp's light into ``image`` (5, ny, nx) in place, clipped at the edges."""
    light = stamp.total()
    n = light.shape[-1]
    ny, nx = image.shape[1:]
    ys, xs = max(stamp.y0, 0), max(stamp.x0, 0)
    ye, xe = min(stamp.y0 + n, ny), min(stamp.x0 + n, nx)
    if ys >= ye or xs >= xe:
        return
    image[:, ys:ye, xs:xe] += light[:, ys - stamp.y0:ye - stamp.y0, xs - stamp.x0:xe - stamp.x0]


def white_sigma(fwhm_arcsec: np.ndarray, depth: np.ndarray = DEPTH_5SIG) -> np.ndarray:
    """White-noise sky sigma per pixel for a 5-sigma point-source depth.

    Parameters
    ----------
    fwhm_arcsec : (5,) PSF FWHM per band, arcsec.
    depth : (5,) 5-sigma AB depth of an optimally weighted point source.

    Returns
    -------
    (5,) sigma, image units: flux_5 / (5 sqrt(NEA)), NEA = 1 / sum(psf^2) pixels.
    """
    nea = 1.0 / np.sum(psf_kernels(fwhm_arcsec) ** 2, axis=(1, 2))
    return mag_to_flux(depth) / (5.0 * np.sqrt(nea))
