"""Lensed sources rendered with lenstronomy and injected into real survey cutouts.

The positives of a lens task, made the way survey teams make them (HOLISMOKES, DES, KiDS):
a source behind one of the survey's own galaxies, lensed by an SIE + external shear centred
on it, integrated over supersampled pixels, convolved with the tile's PSF, scaled to the
tile's flux units through its zero point, given its own Poisson noise and added to the raw
cutout (which already holds the host, its neighbours and the real sky noise).

The source model differs on purpose from the mock survey's lenses
(:func:`skysift.sim.objects.make_lens`: Sérsic n 0.7-1.5 plus 2-4 Gaussian clumps, one prior),
so that a good score on the mock is not an echo of the simulator: here an elliptical Sérsic
with n over a wide range plus 0-6 compact exponential (Sérsic n=1) star-forming knots, with
its own priors (``training_set.lens``), or a user's linear-flux FITS image of a real galaxy
lensed through an interpolated profile (lenstronomy ``INTERPOL``): a 2-D image with the
colours of an SED slope, or a (band, y, x) cube lensed band by band
(:class:`BandLensedSource`), which keeps the galaxy's own colour gradients.

Geometry: offsets (``xi``, ``eta``) in arcsec along the stamp's +x and +y pixel axes from the
host's true position; orientations are drawn isotropically, so the sky's orientation does
not matter. Colours: a power-law SED, f_nu proportional to lambda**slope, through each band's
effective wavelength (:data:`skysift.sim.objects.BAND_WAVELENGTH_NM`). PSFs, the stamp's
:class:`~skysift.sim.paint.Frame`, supersampled rendering and Poisson noise:
:mod:`skysift.sim.paint`.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from skysift.errors import ConfigError, SurveyError
from skysift.sim.paint import Frame, add_poisson, render, sed_flux
from skysift.sim.render import (
    LensedSource,
    light_model,
    snr,
)

log = logging.getLogger(__name__)

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


def draw_deflector(rng: np.random.Generator, lcfg: Mapping, min_theta_e: float = 0.0
                   ) -> tuple[list[dict], dict]:
    """An SIE + shear from ``training_set.lens``: (lenstronomy kwargs, parameters).

    ``min_theta_e`` (arcsec, e.g. the PSF FWHM): theta_E is drawn from its log-uniform prior
    truncated below there (no arc is drawn inside the PSF core); when the whole prior lies
    below it, from the untruncated prior (the row is then counted invisible).
    """
    lo, hi = lcfg["theta_e_arcsec"]
    theta_e = _loguniform(rng, (max(lo, min_theta_e * 1.001), hi) if min_theta_e * 1.001 < hi
                          else (lo, hi))
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
        kw["amp"] = w / light_model("SERSIC").total_flux([kw])[0]
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
        from skysift.sim.render import _lens_model
        bx, by = _lens_model().ray_shooting(xi.ravel(), eta.ravel(), self.kwargs_lens)
        model = light_model("INTERPOL")
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
                images: Sequence[np.ndarray] = (), colours: np.ndarray | None = None
                ) -> tuple[LensedSource, dict]:
    """A source behind the lens from the ``training_set.lens`` priors: (shape, parameters).

    Position uniform in area within ``source_offset_max`` x theta_E of the lens centre.
    ``colours``: SED slopes to draw the source's from (the survey's faint galaxies,
    :func:`skysift.sim.hosts.faint_colours`) instead of ``source_colour_slope``.
    """
    theta_e = kwargs_lens[0]["theta_E"]
    beta = lcfg["source_offset_max"] * theta_e * np.sqrt(rng.uniform())
    phi = rng.uniform(0, 2 * np.pi)
    centre = (float(beta * np.cos(phi)), float(beta * np.sin(phi)))
    params = dict(source_mag=float(rng.uniform(*lcfg["source_mag"])),
                  source_slope=float(colours[rng.integers(colours.size)])
                  if colours is not None and colours.size
                  else float(rng.uniform(*lcfg["source_colour_slope"])),
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
                rng: np.random.Generator, images: Sequence[np.ndarray] = (),
                min_theta_e: float = 0.0, colours: np.ndarray | None = None
                ) -> tuple[np.ndarray, dict]:
    """Inject one lensed source into a raw cutout.

    The lens is drawn once (theta_E above ``min_theta_e``, :func:`draw_deflector`); the source
    is redrawn up to ``lcfg["max_draws"]`` times until
    the arc S/N reaches ``arc_snr_min`` (else the best draw is kept, ``n_draws`` says so).
    With ``arc_snr_target`` [lo, hi], the kept source's flux is then scaled so that its arc
    S/N is log-uniform in that range (``source_mag`` follows), whatever the survey's depth.
    Arc S/N is :func:`skysift.sim.render.snr` of the noiseless PSF-convolved arc against
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
    kwargs_lens, lens_params = draw_deflector(rng, lcfg, min_theta_e)
    best, n_draws = None, 0
    while n_draws < int(lcfg["max_draws"]):
        n_draws += 1
        shape, src = draw_source(rng, lcfg, kwargs_lens, images, colours)
        flux = source_fluxes(src, frame)
        arc, totals = render(shape, flux, frame, supersample)
        s = snr(arc, frame.sky_sigma)
        if best is None or s > best[2]:
            best = (arc, totals, s, src, flux)
        if s >= lcfg["arc_snr_min"]:
            break
    arc, totals, s, src, flux = best
    target = lcfg.get("arc_snr_target")
    if target is not None and s > 0:  # the survey's depth does not set how bright arcs look
        k = float(np.exp(rng.uniform(np.log(target[0]), np.log(target[1])))) / s
        arc, flux, s = arc * k, flux * k, s * k
        src = dict(src, source_mag=float(src["source_mag"] - 2.5 * np.log10(k)))
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

