"""survey2 galaxies: colours, sizes and the light of field galaxies and stars.

Each builder takes a generator, the galaxy's total i magnitude and its centre (``u0``,
``v0`` arcsec from the system's centre) and returns its components and the radius (arcsec)
that holds its light. Colours are (g-r, r-i, i-z, z-y) drawn per template; sizes follow
one magnitude-size relation with scatter. Nothing here imports skysift.
"""

from __future__ import annotations

import numpy as np
from survey2_render import Component, mag_to_flux, spiral_norm

#: (mean, scatter) of the colours (g-r, r-i, i-z, z-y) per template, AB mag
COLOURS = {
    "red": ((1.55, 0.60, 0.35, 0.15), (0.15, 0.08, 0.05, 0.04)),     # early types, z ~ 0.3-0.7
    "bulge": ((1.20, 0.45, 0.28, 0.12), (0.15, 0.08, 0.05, 0.04)),   # bulges, S0 discs
    "disc": ((0.60, 0.30, 0.15, 0.07), (0.15, 0.08, 0.06, 0.04)),    # star-forming discs
    "sf": ((0.25, 0.12, 0.05, 0.03), (0.12, 0.08, 0.06, 0.04)),      # HII regions, knots
    "source": ((0.15, 0.10, 0.10, 0.05), (0.15, 0.10, 0.08, 0.05)),  # lensed sources, z 1-3
    "faint": ((0.45, 0.28, 0.15, 0.07), (0.30, 0.15, 0.10, 0.06)),   # faint background
}
Rng = np.random.Generator
Built = tuple[list[Component], float]  #: a galaxy's components and extent (arcsec)
CAT_LIMIT_I = 23.3  #: faintest catalogued i magnitude (about 20 objects per arcmin^2)


def colour(rng: np.random.Generator, template: str) -> np.ndarray:
    """(4,) colours (g-r, r-i, i-z, z-y) of ``template`` (:data:`COLOURS`), AB mag."""
    mean, sd = COLOURS[template]
    return np.asarray(mean) + rng.normal(0.0, sd)


def band_flux(i_mag: float, col: np.ndarray) -> np.ndarray:
    """(5,) g r i z y fluxes (image units) of total i magnitude ``i_mag`` and colours ``col``."""
    r = i_mag + col[1]
    z = i_mag - col[2]
    return mag_to_flux(np.array([r + col[0], r, i_mag, z, z - col[3]]))


def powerlaw_mag(rng: np.random.Generator, lo: float, hi: float, slope: float = 0.33) -> float:
    """A magnitude in [lo, hi] drawn from number counts dN/dm ~ 10^(slope m)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return float(np.log10(a + rng.random() * (b - a)) / slope)


def half_light(rng: np.random.Generator, i_mag: float, r20: float) -> float:
    """Half-light radius (arcsec): ``r20`` at i = 20, x1.5 per magnitude brighter, 0.15 dex."""
    return float(np.clip(r20 * 10 ** (-0.18 * (i_mag - 20) + rng.normal(0, 0.15)), 0.1, 4.0))


def _sersic(i_mag: float, col: np.ndarray, re: float, n: float, q: float, pa: float,
            u0: float, v0: float, owner: int, role: str = "body") -> Component:
    """A Sérsic component of total i ``i_mag`` and colours ``col`` (4,)."""
    return Component("sersic", dict(re=re, n=n, q=q, pa=pa, u0=u0, v0=v0),
                     band_flux(i_mag, col), owner, role)


def share_mag(i_mag: float, frac: float) -> float:
    """i magnitude of the share ``frac`` of a galaxy of total magnitude ``i_mag``."""
    return i_mag - 2.5 * np.log10(max(frac, 1e-6))


def elliptical(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
               owner: int = 0, template: str = "red") -> Built:
    """A de Vaucouleurs-like early type: one Sérsic, n 3-5.5, q 0.55-1."""
    re = half_light(rng, i_mag, 0.8)
    comp = _sersic(i_mag, colour(rng, template), re, rng.uniform(3.0, 5.5),
                   rng.uniform(0.55, 1.0), rng.uniform(0, np.pi), u0, v0, owner)
    return [comp], float(np.clip(7 * re, 2.0, 15.0))


def bulge_disc(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
               owner: int = 0, bt: tuple = (0.0, 0.3), q: tuple = (0.25, 1.0),
               templates: tuple = ("bulge", "disc"), r20: float = 1.1
) -> tuple[list[Component], float, tuple[float, float, float]]:
    """Bulge (Sérsic n 1.5-4) plus exponential disc sharing one position angle; B/T drawn
    uniform in ``bt``, disc axis ratio in ``q``, disc size ``r20`` (arcsec) at i = 20;
    returns also the disc's (re, q, pa)."""
    re, qd, pa = half_light(rng, i_mag, r20), rng.uniform(*q), rng.uniform(0, np.pi)
    frac = rng.uniform(*bt)
    comps = [_sersic(share_mag(i_mag, 1 - frac), colour(rng, templates[1]), re, 1.0, qd, pa,
                     u0, v0, owner)]
    if frac > 0.03:
        comps.append(_sersic(share_mag(i_mag, frac), colour(rng, templates[0]),
                             re * rng.uniform(0.15, 0.35), rng.uniform(1.5, 4.0),
                             max(qd, rng.uniform(0.6, 1.0)), pa, u0, v0, owner))
    return comps, float(np.clip(5 * re, 2.0, 15.0)), (re, qd, pa)


def lenticular(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
               owner: int = 0) -> Built:
    """S0: a red bulge holding 40-70 % of the light in a reddish disc."""
    comps, ext, _ = bulge_disc(rng, i_mag, u0, v0, owner, (0.4, 0.7), (0.3, 0.95),
                               ("red", "bulge"))
    return comps, ext


def disc(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
         owner: int = 0) -> Built:
    """Late-type disc: B/T 0-0.3, blue disc, redder bulge, any inclination."""
    comps, ext, _ = bulge_disc(rng, i_mag, u0, v0, owner)
    return comps, ext


def _gauss(i_mag: float, col: np.ndarray, sigma: float, u0: float, v0: float, owner: int,
           role: str = "body", q: float = 1.0, pa: float = 0.0) -> Component:
    """A Gaussian component of total i ``i_mag``, colours ``col`` (4,), ``sigma`` arcsec."""
    return Component("gauss", dict(sigma=sigma, q=q, pa=pa, u0=u0, v0=v0),
                     band_flux(i_mag, col), owner, role)


def knots(rng: Rng, i_mag: float, pos: np.ndarray, sigma: tuple[float, float], owner: int,
          template: str = "sf", role: str = "body") -> list[Component]:
    """Star-forming knots at ``pos`` (k, 2) arcsec sharing total magnitude ``i_mag``."""
    shares = rng.dirichlet(np.ones(len(pos)))
    return [_gauss(share_mag(i_mag, s), colour(rng, template), float(rng.uniform(*sigma)),
                   float(p[0]), float(p[1]), owner, role) for s, p in zip(shares, pos, strict=True)]


def _ellipse_to_sky(x: np.ndarray, y: np.ndarray, q: float, pa: float, u0: float,
                    v0: float) -> np.ndarray:
    """(k, 2) sky offsets of points (x, y) given in a disc's face-on frame."""
    c, s = np.cos(pa), np.sin(pa)
    return np.stack([u0 + c * x - s * q * y, v0 + s * x + c * q * y], axis=1)


def spiral(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
           owner: int = 0) -> Built:
    """Large disc with 2 or 3 logarithmic arms (pitch 12-30 deg) holding 30-55 % of the light
    in a bluer colour, and star-forming knots along the arms; mostly face-on (q 0.45-1)."""
    f_arm, f_knot = rng.uniform(0.3, 0.55), rng.uniform(0.05, 0.15)
    comps, ext, (re, q, pa) = bulge_disc(rng, share_mag(i_mag, 1 - f_arm - f_knot), u0, v0,
                                         owner, (0.05, 0.3), (0.45, 1.0), r20=1.5)
    h = re / 1.678
    arms, pitch = int(rng.choice([2, 2, 3])), np.radians(rng.uniform(12, 30))
    phase, r_in = rng.uniform(0, 2 * np.pi), h * rng.uniform(0.5, 1.0)
    comps.append(Component(
        "spiral", dict(h=h, q=q, pa=pa, arms=arms, pitch=pitch, phase=phase,
                       sharp=int(rng.integers(3, 6)), r_in=r_in, norm=spiral_norm(h, r_in),
                       u0=u0, v0=v0), band_flux(share_mag(i_mag, f_arm), colour(rng, "sf")), owner))
    k = int(rng.integers(4, 16))
    r = h * rng.uniform(0.7, 3.0, k)
    theta = (np.log(r / h) / np.tan(pitch) + phase + 2 * np.pi * rng.integers(0, arms, k) / arms
             + rng.normal(0, 0.1, k))
    pos = _ellipse_to_sky(r * np.cos(theta), r * np.sin(theta), q, pa, u0, v0)
    comps += knots(rng, share_mag(i_mag, f_knot), pos, (0.05, 0.12), owner)
    return comps, ext


def edgeon(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
           owner: int = 0) -> Built:
    """Edge-on disc (q 0.08-0.2), reddened, 60 % with a mid-plane dust lane; small bulge."""
    re, q, pa = half_light(rng, i_mag, 1.3), rng.uniform(0.08, 0.2), rng.uniform(0, np.pi)
    bt = rng.uniform(0.0, 0.3)
    col = colour(rng, "disc") + np.array([0.2, 0.08, 0.04, 0.0])
    depth = rng.uniform(0.3, 0.7) if rng.random() < 0.6 else 0.0
    comps = [Component("edgeon", dict(re=re, q=q, pa=pa, lane_depth=depth,
                                      lane_width=re * q * rng.uniform(0.2, 0.4), u0=u0, v0=v0),
                       band_flux(share_mag(i_mag, 1 - bt), col), owner)]
    if bt > 0.03:
        comps.append(_sersic(share_mag(i_mag, bt), colour(rng, "bulge"),
                             re * rng.uniform(0.1, 0.25), rng.uniform(1.5, 3.0),
                             rng.uniform(0.5, 0.9), pa, u0, v0, owner))
    return comps, float(np.clip(5 * re, 2.0, 15.0))


def ring(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
         owner: int = 0) -> Built:
    """Ring galaxy: a red core and a blue ring (radius 1-3.2", 30-60 % of the light) with
    knots on it: the look-alike of an Einstein ring."""
    f_ring = rng.uniform(0.3, 0.6)
    core_i = share_mag(i_mag, 1 - f_ring)
    re = half_light(rng, core_i, 0.5)
    radius = float(np.clip(re * rng.uniform(3, 6), 1.0, 3.2))
    width, q, pa = radius * rng.uniform(0.08, 0.2), rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
    comps = [_sersic(core_i, colour(rng, str(rng.choice(["red", "bulge"]))), re,
                     rng.uniform(1.5, 3.5), rng.uniform(0.7, 1.0), pa, u0, v0, owner)]
    f_knot = rng.uniform(0.2, 0.5)
    comps.append(Component("ring", dict(radius=radius, width=width, q=q, pa=pa, u0=u0, v0=v0),
                           band_flux(share_mag(i_mag, f_ring * (1 - f_knot)),
                                     colour(rng, str(rng.choice(["sf", "disc"])))), owner))
    phi = rng.uniform(0, 2 * np.pi, int(rng.integers(3, 11)))
    pos = _ellipse_to_sky(radius * np.cos(phi), radius * np.sin(phi), q, pa, u0, v0)
    comps += knots(rng, share_mag(i_mag, f_ring * f_knot), pos, (0.06, 0.12), owner)
    return comps, radius + 4 * width + 1.5


def irregular(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
              owner: int = 0) -> Built:
    """Clumpy star-forming galaxy: a diffuse n 0.5-1 body and 3-7 bright knots."""
    re, f_knot = half_light(rng, i_mag, 0.9), rng.uniform(0.3, 0.6)
    comps = [_sersic(share_mag(i_mag, 1 - f_knot), colour(rng, "disc"), re, rng.uniform(0.5, 1.0),
                     rng.uniform(0.4, 1.0), rng.uniform(0, np.pi), u0, v0, owner)]
    k = int(rng.integers(3, 8))
    pos = np.array([u0, v0]) + rng.normal(0, 0.8 * re, (k, 2))
    comps += knots(rng, share_mag(i_mag, f_knot), pos, (0.08, 0.25), owner)
    return comps, float(np.clip(5 * re, 2.0, 10.0))


def star(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
         owner: int = 0) -> Built:
    """A point source on a one-parameter stellar locus (F to M dwarfs)."""
    t = rng.random() ** 0.7
    col = np.array([0.3 + 1.1 * t, 0.1 + 0.3 * t + 1.0 * t**4, 0.04 + 0.14 * t + 0.45 * t**4,
                    0.02 + 0.06 * t + 0.25 * t**4]) + rng.normal(0, 0.03, 4)
    comp = Component("point", dict(u0=u0, v0=v0), band_flux(i_mag, col), owner)
    return [comp], 3.0 + 2.0 * max(0.0, 20.0 - i_mag)


def faint(rng: Rng, i_mag: float, u0: float = 0.0, v0: float = 0.0,
          owner: int = 0) -> Built:
    """Uncatalogued background galaxy: one small Sérsic, mostly blue."""
    re = float(np.exp(rng.uniform(np.log(0.1), np.log(0.5))))
    comp = _sersic(i_mag, colour(rng, "faint"), re, rng.uniform(0.5, 2.0), rng.uniform(0.3, 1.0),
                   rng.uniform(0, np.pi), u0, v0, owner)
    return [comp], float(np.clip(6 * re, 1.5, 3.0))


#: field galaxy builders: (builder, share of field galaxies, brightest and faintest i, slope
#: of the counts dN/dm ~ 10^(slope m)); early types have the flatter counts of the bright
#: end of the red sequence, so that red galaxies as bright as the lenses' deflectors abound
FIELD_TYPES = {
    "elliptical": (elliptical, 0.20, 17.0, CAT_LIMIT_I, 0.2),
    "lenticular": (lenticular, 0.10, 17.0, 23.0, 0.2),
    "disc": (disc, 0.22, 17.5, CAT_LIMIT_I, 0.33),
    "spiral": (spiral, 0.15, 17.5, 21.0, 0.33),
    "edgeon": (edgeon, 0.10, 17.5, 22.5, 0.33),
    "ring": (ring, 0.05, 17.5, 21.0, 0.33),
    "irregular": (irregular, 0.10, 19.0, CAT_LIMIT_I, 0.33),
}
