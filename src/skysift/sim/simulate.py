"""Parametric mergers and hard negatives rendered onto real survey cutouts.

Every simulator adds light to one of the survey's own galaxies (the *host*, a real raw
cutout), rendered through :func:`skysift.sim.paint.render` with the tile's PSF, zero point and
the added light's own Poisson noise, so simulated examples look like the survey.

Merger task, positives (``merger``): the host is the primary; a secondary galaxy with a flux
ratio in ``training_set.merger.mass_ratio`` (major at or above ``major_ratio``) at 0.5-4
arcsec, and a stage: ``pair`` (two undisturbed galaxies of one colour: one redshift),
``interacting`` (a curved tidal tail from each galaxy and a bridge between them),
``coalescing`` (a close secondary, tails from the common centre, shells), ``post`` (no
secondary left: shells and plumes). Negatives: ``projection``, a chance projection: an
unrelated galaxy of another colour and size (another redshift) beside the host, no tides.

Lens task, hard negatives: ``ring`` (a star-forming ring of knots around the host, complete
and centred, unlike an arc), ``spiral`` (blue logarithmic spiral arms), ``pair`` (one or two
compact blue companions at 0.8-3.5 arcsec, which mimic counter-images), ``edgeon`` (a thin
edge-on disc beside the host, often tangential: an arc-like streak). The merger task may use
the lens kinds too (spiral arms and rings pass for tidal features).

Tidal features, rings and arms are chains of circular Gaussian knots
(:class:`skysift.sim.render.Blobs`, the class the mock's tidal features use); galaxies are
Sérsic profiles (:class:`skysift.sim.render.Sersic`). Priors differ from the mock survey's mergers
(:func:`skysift.sim.objects.make_merger`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from skysift.sim.paint import Frame, add_poisson, render, sed_flux
from skysift.sim.render import Blobs, Sersic, snr


@dataclass(frozen=True)
class Host:
    """What the simulators know of a host galaxy (measured on its raw cutout).

    flux : (band,) aperture flux in image units; mag : AB magnitude in the reference band;
    slope : colour as the power-law SED slope (f_nu ~ lambda**slope); r50_arcsec : radius
    holding half the aperture flux.
    """

    flux: np.ndarray
    mag: float
    slope: float
    r50_arcsec: float


def _knots(x, y, sigma, weight) -> Blobs:
    w = np.asarray(weight, dtype=float)
    return Blobs(np.asarray(x, float), np.asarray(y, float), np.asarray(sigma, float), w / w.sum())


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _project(u: np.ndarray, v: np.ndarray, q: float, pa: float) -> tuple[np.ndarray, np.ndarray]:
    """A circle's points (u, v) seen inclined (axis ratio q) and rotated by pa (rad)."""
    v = v * q
    return u * np.cos(pa) - v * np.sin(pa), u * np.sin(pa) + v * np.cos(pa)


def _galaxy(rng: np.random.Generator, x: float, y: float, r_e: float) -> Sersic:
    return Sersic(float(x), float(y), float(r_e), float(rng.uniform(0.5, 4.0)),
                  float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.0, 180.0)))


# --- lens hard negatives -----------------------------------------------------------------

def ring(rng: np.random.Generator, host: Host) -> tuple[list, dict]:
    """A complete star-forming ring of 16-40 knots, 0.8-3 arcsec, centred on the host."""
    radius, n = rng.uniform(0.8, 3.0), int(rng.integers(16, 41))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    x, y = _project(radius * np.cos(t), radius * np.sin(t), rng.uniform(0.5, 1.0),
                    rng.uniform(0, np.pi))
    shape = _knots(x, y, rng.uniform(0.12, 0.3, n), rng.lognormal(0.0, 0.6, n))
    frac, slope = rng.uniform(0.1, 0.6), rng.uniform(-0.5, 1.0)
    return [(shape, host.mag - 2.5 * np.log10(frac), slope)], dict(
        size_arcsec=float(radius), flux_fraction=float(frac))


def spiral(rng: np.random.Generator, host: Host) -> tuple[list, dict]:
    """2-3 blue logarithmic spiral arms of knots from 0.3-0.8 to 2-4 arcsec."""
    n_arms, pitch = int(rng.integers(2, 4)), np.radians(rng.uniform(12.0, 30.0))
    r0, r1 = rng.uniform(0.3, 0.8), rng.uniform(2.0, 4.0)
    phase, xs, ys = rng.uniform(0, 2 * np.pi), [], []
    for arm in range(n_arms):
        theta = np.linspace(0, np.log(r1 / r0) / np.tan(pitch), 40)
        r = r0 * np.exp(theta * np.tan(pitch))
        a = theta + phase + 2 * np.pi * arm / n_arms
        xs.append(r * np.cos(a))
        ys.append(r * np.sin(a))
    x, y = _project(np.concatenate(xs), np.concatenate(ys), rng.uniform(0.4, 1.0),
                    rng.uniform(0, np.pi))
    shape = _knots(x, y, rng.uniform(0.1, 0.25, x.size), rng.lognormal(0.0, 0.5, x.size))
    frac, slope = rng.uniform(0.2, 0.8), rng.uniform(-0.5, 1.0)
    return [(shape, host.mag - 2.5 * np.log10(frac), slope)], dict(
        size_arcsec=float(r1), flux_fraction=float(frac))


def pair(rng: np.random.Generator, host: Host) -> tuple[list, dict]:
    """One or two compact blue companions at 0.8-3.5 arcsec."""
    comps, seps = [], []
    for _ in range(int(rng.integers(1, 3))):
        sep, phi = rng.uniform(0.8, 3.5), rng.uniform(0, 2 * np.pi)
        gal = Sersic(float(sep * np.cos(phi)), float(sep * np.sin(phi)),
                     _loguniform(rng, 0.08, 0.4), float(rng.uniform(0.5, 2.0)),
                     float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 180)))
        comps.append((gal, host.mag + rng.uniform(0.5, 3.5), rng.uniform(-0.5, 1.5)))
        seps.append(sep)
    return comps, dict(separation_arcsec=float(min(seps)))


def edgeon(rng: np.random.Generator, host: Host) -> tuple[list, dict]:
    """A thin edge-on disc (axis ratio 0.08-0.25) at 1-3.5 arcsec, tangential to the host in
    60% of draws: a straight streak where an arc would curve (a chance alignment)."""
    sep, phi = rng.uniform(1.0, 3.5), rng.uniform(0, 2 * np.pi)
    # Sersic's major axis lies at 90 deg - pa_deg from +xi: pa = -phi puts it tangential
    pa = -np.degrees(phi) if rng.uniform() < 0.6 else rng.uniform(0.0, 180.0)
    r_e = _loguniform(rng, 0.3, 1.2)
    disc = Sersic(float(sep * np.cos(phi)), float(sep * np.sin(phi)), r_e,
                  float(rng.uniform(0.8, 1.5)), float(rng.uniform(0.08, 0.25)), float(pa))
    return [(disc, host.mag + rng.uniform(0.0, 3.0), rng.uniform(-0.5, 1.5))], dict(
        separation_arcsec=float(sep), size_arcsec=float(r_e))


# --- mergers and chance projections ------------------------------------------------------

def _tail(rng: np.random.Generator, base: tuple[float, float], angle: float, r_start: float,
          length: float, curl: float) -> tuple[np.ndarray, ...]:
    """One curved tidal tail: 20 knots fading and widening outwards from ``base``."""
    t = np.linspace(0.0, 1.0, 20)
    r, a = r_start + length * t, angle + curl * t
    sigma = rng.uniform(0.12, 0.2) * (1 + 1.5 * t)
    w = np.exp(-rng.uniform(1.0, 2.5) * t) * rng.lognormal(0.0, 0.3, t.size)
    return base[0] + r * np.cos(a), base[1] + r * np.sin(a), sigma, w


def _shells(rng: np.random.Generator, r50: float) -> tuple[np.ndarray, ...]:
    """2-4 partial shells on alternating sides of the host."""
    xs, ys, sig, w = [], [], [], []
    psi, radius = rng.uniform(0, 2 * np.pi), max(r50, 0.3) * rng.uniform(1.3, 2.0)
    for k in range(int(rng.integers(2, 5))):
        half = rng.uniform(0.4, 1.0)
        n = max(int(2 * half * radius / 0.1), 4)
        a = psi + k * np.pi + np.linspace(-half, half, n)
        xs.append(radius * np.cos(a))
        ys.append(radius * np.sin(a))
        sig.append(np.full(n, rng.uniform(0.08, 0.16)))
        w.append(np.full(n, 0.7**k / n))
        radius *= rng.uniform(1.4, 1.8)
    return tuple(np.concatenate(v) for v in (xs, ys, sig, w))


def merger(rng: np.random.Generator, host: Host, mcfg: Mapping) -> tuple[list, dict]:
    """A merger around the host (the primary); stage drawn from ``merger.stages``."""
    stage = str(rng.choice(mcfg["stages"]))
    lo, hi = mcfg["separation_arcsec"]
    sep = 0.0 if stage == "post" else rng.uniform(lo, hi if stage != "coalescing"
                                                  else lo + 0.3 * (hi - lo))
    ratio, phi = float(rng.uniform(*mcfg["mass_ratio"])), rng.uniform(0, 2 * np.pi)
    sx, sy = sep * np.cos(phi), sep * np.sin(phi)
    r50 = max(host.r50_arcsec, 0.2)
    comps = []
    if stage != "post":
        sec = _galaxy(rng, sx, sy, r50 * np.sqrt(ratio) * rng.uniform(0.7, 1.4))
        comps.append((sec, host.mag - 2.5 * np.log10(ratio), host.slope + rng.normal(0, 0.3)))
    frac = 0.0 if stage == "pair" else float(rng.uniform(*mcfg["tidal_fraction"]))
    parts = []
    curl = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.8)
    if stage == "interacting":
        parts += [_tail(rng, (0.0, 0.0), phi + np.pi, r50, rng.uniform(1.5, 4.0), curl),
                  _tail(rng, (sx, sy), phi, r50 * np.sqrt(ratio), rng.uniform(1.0, 3.0), curl)]
        t = np.linspace(0.2, 0.8, 8)
        parts.append((t * sx, t * sy, np.full(t.size, rng.uniform(0.12, 0.2)),
                      np.full(t.size, rng.uniform(0.02, 0.06))))
    elif stage in ("coalescing", "post"):
        c = (sx * ratio / (1 + ratio), sy * ratio / (1 + ratio))
        psi = rng.uniform(0, 2 * np.pi)
        for k in range(1 if stage == "post" and rng.uniform() < 0.5 else 2):
            parts.append(_tail(rng, c, psi + k * np.pi, r50, rng.uniform(1.5, 4.5), curl))
        parts.append(_shells(rng, r50))
    if parts:
        x, y, s, w = (np.concatenate([p[i] for p in parts]) for i in range(4))
        comps.append((_knots(x, y, s, w), host.mag - 2.5 * np.log10(frac),
                      host.slope - rng.uniform(0.0, 1.0)))
    return comps, dict(merger_stage=stage, mass_ratio=ratio, separation_arcsec=float(sep),
                       major=float(ratio >= mcfg["major_ratio"]), flux_fraction=frac)


def projection(rng: np.random.Generator, host: Host, mcfg: Mapping) -> tuple[list, dict]:
    """A chance projection: an unrelated galaxy (other colour and size), no tidal features."""
    sep, phi = rng.uniform(*mcfg["separation_arcsec"]), rng.uniform(0, 2 * np.pi)
    gal = _galaxy(rng, sep * np.cos(phi), sep * np.sin(phi), _loguniform(rng, 0.1, 1.0))
    slope = host.slope + rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 2.5)
    return [(gal, host.mag + rng.uniform(-0.5, 3.0), slope)], dict(
        separation_arcsec=float(sep))


def primary(rng: np.random.Generator, host: Host) -> tuple[list, dict]:
    """A simulated galaxy standing in for the host on blank sky: its magnitude and colour,
    a Sérsic of radius 0.6-1 x its measured (PSF-broadened) half-light radius."""
    r_e = max(host.r50_arcsec, 0.2) * rng.uniform(0.6, 1.0)
    return [(_galaxy(rng, 0.0, 0.0, r_e), host.mag, host.slope)], dict(primary_r_e_arcsec=r_e)


def simulate(kind: str, raw: np.ndarray, frame: Frame, host: Host, tcfg: Mapping,
             rng: np.random.Generator, blank: bool = False) -> tuple[np.ndarray, dict]:
    """Add one simulated feature of ``kind`` (merger, projection, ring, spiral, pair, edgeon).

    Parameters
    ----------
    raw : (band, s, s) float32 host cutout in image units, or a blank-sky cutout when
        ``blank``: then a simulated primary (:func:`primary`, with ``host``'s photometry)
        is drawn at the centre first, so a merger or projection is two simulated galaxies;
        kind ``isolated`` is that primary alone.
    tcfg : the ``training_set`` config block (``merger`` priors, ``supersample``).

    Returns
    -------
    image : (band, s, s) float32, raw + the added light + its Poisson noise.
    params : the drawn parameters, ``sim_snr``, the S/N of the added light alone
        (:func:`skysift.sim.render.snr` against ``frame.sky_sigma``; on blank sky the
        primary's light included), and ``feature_snr``, that of the feature alone
        (companion, tidal light, ring, arms; never the simulated primary).
    """
    base: list = []
    if blank or kind == "isolated":
        base, _ = primary(rng, host)
    if kind == "isolated":
        comps, params = [], {}
    elif kind in ("merger", "projection"):
        comps, params = (merger if kind == "merger" else projection)(rng, host, tcfg["merger"])
    else:
        comps, params = {"ring": ring, "spiral": spiral, "pair": pair,
                         "edgeon": edgeon}[kind](rng, host)
    added, feature = np.zeros(raw.shape), np.zeros(raw.shape)
    for k, (shape, mag, slope) in enumerate(base + comps):
        flux = sed_flux(mag, slope, frame.lam_nm, frame.ref, frame.zeropoint)[None]
        light = render(shape, flux, frame, tcfg["supersample"])[0]
        added += light
        if k >= len(base):
            feature += light
    params["sim_snr"] = snr(added, frame.sky_sigma)
    params["feature_snr"] = snr(feature, frame.sky_sigma)
    return (raw + add_poisson(added, frame.gain, rng)).astype(np.float32), params
