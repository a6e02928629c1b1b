"""What the mock survey's objects are: stars, field galaxies, strong lenses and mergers.

Each ``make_*`` draws one object from a seeded generator and the mock config (through a
:class:`Context`): its components (light models of :mod:`skysift.sim.render` with fluxes per
band in ADU) and its truth row (magnitudes, colours, lens and merger parameters). Colours
follow a two-slope SED in log(wavelength) (:class:`Photometry`); the draws' order is part
of the mock's identity (tests/sim/test_mock_identity.py), so reordering them changes every tile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from skysift.sim.render import (
    Blobs,
    Component,
    LensedSource,
    MockObject,
    Sersic,
    render,
    snr,
    unit_totals,
)

#: Effective wavelengths (nm) of common band names; colours are interpolated in log(lambda).
BAND_WAVELENGTH_NM = {"u": 355.0, "g": 475.0, "r": 622.0, "i": 763.0, "z": 905.0, "y": 1000.0,
                      "Y": 1000.0, "J": 1250.0, "H": 1650.0, "K": 2200.0, "Ks": 2150.0}
#: (mean, sd) of the g-r and r-i colours of each population.
COLOURS = {"red": ((1.25, 0.08), (0.45, 0.04)), "blue": ((0.55, 0.15), (0.25, 0.06)),
           "source": ((0.30, 0.10), (0.12, 0.05)), "clump": ((0.05, 0.08), (0.0, 0.05)),
           "tidal": ((0.45, 0.10), (0.20, 0.05))}
STAGES = ("pair", "interacting", "coalescing")
MAX_SOURCE_DRAWS = 8
MAX_MERGER_DRAWS = 16


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


def _alone_snr(components: list[Component], ctx: Context) -> float:
    """:func:`snr` of these components alone, noiseless and PSF-convolved, against sky noise
    only, on an axis-aligned frame at the mock pixel scale centred on a pixel."""
    _, _, image = render(MockObject(components), 0.0, 0.0, ctx.cd_arcsec, ctx.fwhm_arcsec)
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
        s = _alone_snr([arc], ctx)
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


def _draw_merger(rng: np.random.Generator, ctx: Context,
                 stages: tuple[str, ...]) -> tuple[list[Component], dict]:
    """One merger draw: [primary, secondary, tidal components...] and its truth."""
    m = ctx.mock["merger"]
    stage = stages[int(rng.integers(len(stages)))]
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
    return comps, dict(merger_mass_ratio=ratio, merger_stage=stage, merger_separation_arcsec=sep)


def _tidal_snr(comps: list[Component], ctx: Context) -> float:
    """S/N of the tidal features (tails, bridge, shells: every component after the two galaxies)."""
    return _alone_snr(comps[2:], ctx) if len(comps) > 2 else 0.0


def make_merger(rng: np.random.Generator, ctx: Context) -> tuple[MockObject, dict]:
    """A primary at the catalog position and a secondary galaxy with stage features.

    Secondary/primary flux ratio uniform in merger.mass_ratio; separation uniform in
    merger.separation_arcsec (coalescing: its lowest 35%). "pair": two undisturbed
    galaxies; "interacting": two curved tidal tails (10-25% of the light) and a bridge;
    "coalescing": tails from the common centre plus shells around the primary.

    The tidal S/N (``merger_tidal_snr``) is :func:`snr` of the noiseless PSF-convolved tidal
    features alone, as the lenses' arc S/N. With merger.tidal_snr_min > 0 (a visible
    interaction, as a visual merger catalogue asks) the pair stage, which has none, is not
    drawn, and whole mergers are redrawn up to MAX_MERGER_DRAWS times until the tidal S/N
    reaches the floor; then the best draw's tidal features are brightened to reach it.
    With the floor at 0 (the default) the first draw is kept: the draws are unchanged.
    """
    floor = ctx.mock["merger"]["tidal_snr_min"]
    stages = STAGES if floor <= 0 else STAGES[1:]
    best = None
    for _ in range(MAX_MERGER_DRAWS):
        comps, info = _draw_merger(rng, ctx, stages)
        s = _tidal_snr(comps, ctx)
        if best is None or s > best[2]:
            best = (comps, info, s)
        if s >= floor:
            break
    comps, info, s = best
    brightened = s < floor
    if brightened:
        factor = floor / max(s, 1e-12) * (1 + 1e-6)
        comps = comps[:2] + [Component(c.shape, c.flux * factor) for c in comps[2:]]
        s *= factor
    return MockObject(comps), dict(info, merger_tidal_snr=s, brightened=brightened)
