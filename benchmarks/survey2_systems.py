"""survey2 systems: strong lenses, galaxy mergers, chance projections and field objects.

A system (:class:`survey2_render.System`) is what is drawn at one sky position: a lens (a
red early type whose SIE + shear lenses a clumpy blue source, ray-traced by lenstronomy), a
merger (two galaxies with tidal tails, a bridge, shells or plumes, or a close pair with weak
features), a projection (two unrelated galaxies), or one field galaxy or star. Nothing here
imports skysift.
"""

from __future__ import annotations

import numpy as np
from survey2_galaxies import (
    CAT_LIMIT_I,
    FIELD_TYPES,
    Built,
    Rng,
    band_flux,
    colour,
    disc,
    elliptical,
    faint,
    knots,
    lenticular,
    powerlaw_mag,
    share_mag,
    star,
)
from survey2_render import Component, Frame, System, render_system, role_snr

#: merger stages and their probabilities
STAGES = {"pair": 0.25, "interacting": 0.35, "coalescing": 0.2, "post": 0.2}
COMPANION_MIN_SEP = 2.0  #: arcsec; a companion this far out and brighter than the limit is
#                          catalogued as an object of its own (deblended)


def _lens_mass(rng: Rng, theta_e: float, q_light: float, pa_light: float) -> list[dict]:
    """lenstronomy kwargs of the SIE (aligned with the light within ~10 deg) and the shear."""
    q = float(np.clip(q_light + rng.normal(0, 0.1), 0.45, 0.98))
    phi = pa_light + rng.normal(0, np.radians(10))
    e = (1 - q) / (1 + q)
    gam, phi_g = rng.uniform(0, 0.08), rng.uniform(0, np.pi)
    return [dict(theta_E=theta_e, e1=e * np.cos(2 * phi), e2=e * np.sin(2 * phi),
                 center_x=0.0, center_y=0.0),
            dict(gamma1=gam * np.cos(2 * phi_g), gamma2=gam * np.sin(2 * phi_g), ra_0=0, dec_0=0)]


def _source(rng: Rng, theta_e: float) -> tuple[list[Component], dict]:
    """A blue source of unlensed i 22.3-25.8 (Sérsic n 0.6-1.8, 0.08-0.45") plus 0-6 bluer
    knots (10-45 % of its light), centred uniformly within 0.4 theta_E of the optical axis
    (near the caustics: arcs, rings, quads, some doubles); components in the source plane,
    and the truth of the source."""
    i_src = rng.uniform(22.3, 25.8)
    re = float(np.exp(rng.uniform(np.log(0.08), np.log(0.45))))
    r, phi = 0.4 * theta_e * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    us, vs = r * np.cos(phi), r * np.sin(phi)
    n_knot = int(rng.integers(0, 7))
    f_knot = rng.uniform(0.1, 0.45) if n_knot else 0.0
    col = colour(rng, "source")
    comps = [Component("sersic", dict(re=re, n=rng.uniform(0.6, 1.8), q=rng.uniform(0.35, 1.0),
                                      pa=rng.uniform(0, np.pi), u0=us, v0=vs),
                       band_flux(share_mag(i_src, 1 - f_knot), col), 0, "arc", True)]
    if n_knot:
        pos = np.array([us, vs]) + 1.2 * re * rng.normal(0, 0.6, (n_knot, 2))
        clumps = knots(rng, share_mag(i_src, f_knot), pos, (0.03, 0.08), 0, "source", "arc")
        for k in clumps:
            k.flux = k.flux * 10 ** (-0.4 * np.array([-0.2, -0.05, 0.0, 0.05, 0.05]))
            k.lensed = True
        comps += clumps
    return comps, dict(source_i_mag=i_src, source_re_arcsec=re, source_offset_arcsec=r,
                       n_knots=n_knot)


def lens(rng: Rng, frame: Frame, sigma: np.ndarray, snr_floor: float, tries: int = 12) -> System:
    """A strong lens.

    Parameters
    ----------
    rng : generator of every parameter.
    frame : the nominal tile (no rotation, nominal PSF) the arc S/N is measured in.
    sigma : (5,) nominal white sky sigma per pixel.
    snr_floor : the source is redrawn (up to ``tries`` times, the best draw kept) while the
        arc S/N (:func:`survey2_render.role_snr`) is below it.
    tries : source draws.

    Returns
    -------
    A system: a red early type (i from 19.6 - 3 log10 theta_E, 0.45 mag scatter, within
    17.3-21.8) with an SIE (axis ratio and angle near the light's) plus shear (up to 0.08)
    of Einstein radius log-uniform in 0.5-2.2", lensing a blue source of unlensed i
    22.3-25.8 (:func:`_source`). Truth: theta_e_arcsec, deflector_i_mag, source_*, lens_q,
    shear.
    """
    theta_e = float(np.exp(rng.uniform(np.log(0.5), np.log(2.2))))
    i_defl = float(np.clip(19.6 - 3.0 * np.log10(theta_e) + rng.normal(0, 0.45), 17.3, 21.8))
    [defl], ext = elliptical(rng, i_defl)
    mass = _lens_mass(rng, theta_e, defl.params["q"], defl.params["pa"])
    best = None
    for _ in range(tries):
        src, info = _source(rng, theta_e)
        extent = float(min(max(ext, theta_e + 4 * info["source_re_arcsec"] + 2.0), 15.0))
        system = System("lens", 0.0, 0.0, extent, [defl, *src], lens=mass,
                        entries=[dict(u=0.0, v=0.0, kind="lens", is_lens=1, is_merger=0)])
        snr = role_snr(render_system(system, 0.0, 0.0, frame), "arc", sigma)
        if best is None or snr > best[0]:
            best = (snr, system, info)
        if snr >= snr_floor:
            break
    _, system, info = best
    e = float(np.hypot(mass[0]["e1"], mass[0]["e2"]))
    system.truth = dict(theta_e_arcsec=theta_e, deflector_i_mag=i_defl, **info,
                        lens_q=(1 - e) / (1 + e),
                        shear=float(np.hypot(mass[1]["gamma1"], mass[1]["gamma2"])))
    return system


def _blobs(parts: list[tuple]) -> dict:
    """Profile parameters of a chain of Gaussians from tuples (u, v, sigma, q, pa, weight) of
    arrays; the weights are normalised to unit total flux."""
    u, v, sig, q, pa, w = (np.concatenate([np.broadcast_to(p[i], np.shape(p[0])) for p in parts])
                           for i in range(6))
    return dict(u0=u, v0=v, sigma=sig, q=q, pa=pa, w=w / w.sum())


def tail(rng: Rng, start: np.ndarray, phi0: float, length: float, kappa: float) -> tuple:
    """A tidal tail: Gaussians along a curve of constant curvature ``kappa`` (rad/arcsec)
    leaving ``start`` (2,) in direction ``phi0``, widening from ~0.3" to ~0.7" and fading
    over ``length`` (arcsec); a tuple for :func:`_blobs`."""
    kappa = kappa if abs(kappa) > 1e-3 else 1e-3
    s = np.linspace(0.4, length, max(12, int(length / 0.12)))
    phi = phi0 + kappa * s
    u = start[0] + (np.sin(phi) - np.sin(phi0)) / kappa
    v = start[1] - (np.cos(phi) - np.cos(phi0)) / kappa
    sig = rng.uniform(0.2, 0.35) + rng.uniform(0.3, 0.6) * s / length
    return u, v, sig, 0.6, phi, sig * np.exp(-s / (0.6 * length))


def bridge(rng: Rng, p1: np.ndarray, p2: np.ndarray) -> tuple:
    """A bridge of light between two galaxies, bent sideways by up to 30 % of their
    separation; a tuple for :func:`_blobs`."""
    t = np.linspace(0.15, 0.85, 30)
    d = p2 - p1
    ctrl = (p1 + p2) / 2 + np.array([-d[1], d[0]]) * rng.uniform(-0.3, 0.3)
    pts = ((1 - t) ** 2)[:, None] * p1 + (2 * t * (1 - t))[:, None] * ctrl + (t**2)[:, None] * p2
    sig = np.full(t.size, rng.uniform(0.2, 0.4))
    return pts[:, 0], pts[:, 1], sig, 0.7, np.arctan2(d[1], d[0]), np.ones(t.size)


def shells(rng: Rng, r1: float, n: int) -> list[tuple]:
    """``n`` shells on alternating sides at radii r1 * 1.45^k: sharp-edged arcs 100-160 deg
    wide with a fainter fill inside; tuples for :func:`_blobs`."""
    parts, side = [], rng.uniform(0, 2 * np.pi)
    for k in range(n):
        radius, span = r1 * 1.45**k, np.radians(rng.uniform(100, 160))
        centre = side + k * np.pi + rng.normal(0, 0.3)
        a = centre + np.linspace(-span / 2, span / 2, 40)
        win = np.cos(np.pi * (a - centre) / span) / (k + 1)
        for rr, thick, share in ((radius, 0.07, 1.0), (0.78 * radius, 0.2, 0.5)):
            sig_t = max(rr * span / 40 * 1.5, 0.15)
            sig_r = max(thick * rr, 0.12)
            parts.append((rr * np.cos(a), rr * np.sin(a), np.full(a.size, sig_t), sig_r / sig_t
                          if sig_r < sig_t else 1.0, a + np.pi / 2, share * win * sig_t * sig_r))
    return parts


def _combine(i1: float, i2: float | None) -> float:
    """Total i magnitude of two galaxies (``i2`` None: the first alone)."""
    if i2 is None:
        return i1
    return float(-2.5 * np.log10(10 ** (-0.4 * i1) + 10 ** (-0.4 * i2)))


def _tidal_parts(rng: Rng, stage: str, sec: np.ndarray | None, r_primary: float) -> list[tuple]:
    """Geometry of the tidal features of a merger ``stage``; ``sec`` (2,) the companion's
    offset (arcsec) or None, ``r_primary`` the primary's half-light radius (arcsec)."""
    phi_sep = float(np.arctan2(sec[1], sec[0])) if sec is not None else rng.uniform(0, 2 * np.pi)
    sense = rng.choice([-1.0, 1.0])
    origin = np.zeros(2)
    if stage == "pair":
        start = sec if sec is not None else origin
        return [tail(rng, start, phi_sep + sense * np.pi / 2, rng.uniform(1.5, 3.5),
                     sense * rng.uniform(0.15, 0.4)) for _ in range(int(rng.integers(1, 3)))]
    if stage == "interacting":
        parts = [tail(rng, p, phi_sep + s * sense * np.pi / 2 + rng.normal(0, 0.4),
                      rng.uniform(3.0, 9.0), s * sense * rng.uniform(0.08, 0.3))
                 for p, s in ((origin, 1.0), (sec, -1.0))]
        if np.hypot(*sec) > 1.8 and rng.random() < 0.6:
            parts.append(bridge(rng, origin, sec))
        return parts
    if stage == "coalescing":
        parts = [tail(rng, origin, phi_sep + k * np.pi + rng.normal(0, 0.5),
                      rng.uniform(3.0, 8.0), sense * rng.uniform(0.08, 0.3))
                 for k in range(int(rng.integers(1, 3)))]
        if rng.random() < 0.4:
            parts += shells(rng, max(1.5, 2 * r_primary), 1)
        return parts
    parts = shells(rng, max(1.5, rng.uniform(1.5, 2.5) * r_primary), int(rng.integers(2, 5)))
    if rng.random() < 0.5:
        parts.append(tail(rng, origin, phi_sep, rng.uniform(3.0, 7.0), rng.uniform(-0.1, 0.1)))
    return parts


def _tidal_fraction(rng: Rng, stage: str) -> float:
    """Tidal light as a fraction of the pair's total flux: weak or none for pairs."""
    if stage == "pair":
        return 0.0 if rng.random() < 0.4 else rng.uniform(0.01, 0.04)
    return {"interacting": rng.uniform(0.06, 0.25), "coalescing": rng.uniform(0.05, 0.2),
            "post": rng.uniform(0.04, 0.15)}[stage]


def _pair_separation(rng: Rng, stage: str) -> float | None:
    """Primary-companion separation (arcsec) of a merger stage; None: no companion (post)."""
    ranges = {"pair": (1.5, 4.5), "interacting": (1.5, 5.0), "coalescing": (0.4, 1.3)}
    return float(rng.uniform(*ranges[stage])) if stage in ranges else None


def _extent(comps: list[Component], base: float) -> float:
    """Radius (arcsec, at most 18) holding ``comps`` and at least ``base``."""
    reach = [base]
    for c in comps:
        p = c.params
        if c.shape == "blobs":
            reach.append(float(np.max(np.hypot(p["u0"], p["v0"]) + 3 * p["sigma"])) + 1.0)
        else:
            reach.append(float(np.hypot(p.get("u0", 0), p.get("v0", 0))) + base / 2)
    return float(min(max(reach), 18.0))


def _companion(rng: Rng, i_mag: float, pos: np.ndarray, builders: list, owner: int) -> Built:
    """A companion galaxy of magnitude ``i_mag`` at offset ``pos`` (2,) arcsec, made by one
    of ``builders``: (components, extent arcsec)."""
    build = builders[int(rng.integers(len(builders)))]
    return build(rng, i_mag, float(pos[0]), float(pos[1]), owner)[:2]


def _entries(kind: str, pos, i2, sep, allow: bool, is_merger: int) -> list[dict]:
    """Catalogue entries: the primary, plus the companion when it is deblended (far enough,
    bright enough, and ``allow``)."""
    out = [dict(u=0.0, v=0.0, kind=kind, is_lens=0, is_merger=is_merger)]
    if allow and pos is not None and sep >= COMPANION_MIN_SEP and i2 <= CAT_LIMIT_I:
        out.append(dict(u=float(pos[0]), v=float(pos[1]), kind=kind + "_companion",
                        is_lens=0, is_merger=is_merger))
    return out


def merger(rng: Rng, allow_companion: bool = True) -> System:
    """A galaxy merger.

    Parameters
    ----------
    rng : generator of every parameter.
    allow_companion : catalogue the companion as an object of its own (labelled merger too)
        when deblended (at least :data:`COMPANION_MIN_SEP` away and brighter than the limit).

    Returns
    -------
    A system of stage (:data:`STAGES`) pair (1.5-4.5" apart, no or weak tails: 1-4 % of
    the light), interacting (1.5-5", tails from both and often a bridge: 6-25 %),
    coalescing (0.4-1.3", tails and a shell: 5-20 %) or post (no companion left; shells
    and a plume: 4-15 %); flux ratio 0.25-1 (major) or 0.08-0.25 (minor), half each;
    primary i 17.5-21.5. Truth: merger_stage, merger_mass_ratio, merger_major,
    merger_separation_arcsec, merger_tidal_fraction.
    """
    stage = str(rng.choice(list(STAGES), p=list(STAGES.values())))
    ratio = rng.uniform(0.25, 1.0) if rng.random() < 0.5 else float(
        np.exp(rng.uniform(np.log(0.08), np.log(0.25))))
    i1 = powerlaw_mag(rng, 17.5, 21.5)
    kinds = [elliptical, lenticular] if stage == "post" else [elliptical, lenticular, disc, disc]
    comps, ext = kinds[int(rng.integers(len(kinds)))](rng, i1)
    r_primary = comps[0].params.get("re", 1.0)
    sep, pos, i2 = _pair_separation(rng, stage), None, None
    entries = _entries("merger", None, None, 0.0, False, 1)
    if sep is not None:
        i2, phi = share_mag(i1, ratio), rng.uniform(0, 2 * np.pi)
        pos = sep * np.array([np.cos(phi), np.sin(phi)])
        entries = _entries("merger", pos, i2, sep, allow_companion, 1)
        comp2, ext2 = _companion(rng, i2, pos, [disc, disc, elliptical], len(entries) - 1)
        comps += comp2
        ext = max(ext, sep + ext2)
    f_tid = _tidal_fraction(rng, stage)
    if f_tid > 0:
        a = rng.uniform(0.3, 1.0)
        col = a * colour(rng, "disc") + (1 - a) * colour(rng, "red")
        comps.append(Component("blobs", _blobs(_tidal_parts(rng, stage, pos, r_primary)),
                               band_flux(share_mag(_combine(i1, i2), f_tid), col), 0, "tidal"))
    truth = dict(merger_stage=stage, merger_mass_ratio=float(ratio),
                 merger_major=int(ratio >= 0.25), merger_separation_arcsec=sep or 0.0,
                 merger_tidal_fraction=float(f_tid), primary_i_mag=i1)
    return System("merger", 0.0, 0.0, _extent(comps, ext), comps, entries, truth)


def projection(rng: Rng, allow_companion: bool = True) -> System:
    """A chance projection: a galaxy and an unrelated one 1-4" away at another redshift (a
    blue companion beside a red galaxy, or any pair), flux ratio 0.05-1, no tidal light."""
    i1 = powerlaw_mag(rng, 17.5, 22.5)
    red = rng.random() < 0.5
    comps, ext = (elliptical if red else disc)(rng, i1)
    sep = float(rng.uniform(1.0, 4.0))
    ratio = float(np.exp(rng.uniform(np.log(0.05), 0.0)))
    i2, phi = share_mag(i1, ratio), rng.uniform(0, 2 * np.pi)
    pos = sep * np.array([np.cos(phi), np.sin(phi)])
    entries = _entries("projection", pos, i2, sep, allow_companion, 0)
    builders = [FIELD_TYPES[k][0] for k in (("disc", "irregular", "spiral") if red
                                            else ("elliptical", "disc", "irregular"))]
    comp2, ext2 = _companion(rng, i2, pos, builders, len(entries) - 1)
    truth = dict(projection_separation_arcsec=sep, projection_flux_ratio=ratio, primary_i_mag=i1)
    return System("projection", 0.0, 0.0, _extent(comps + comp2, max(ext, sep + ext2)),
                  comps + comp2, entries, truth)


def field_object(rng: Rng, kind: str) -> System:
    """One catalogued field galaxy of ``kind`` (:data:`FIELD_TYPES`) or a star."""
    if kind == "star":
        i_mag = powerlaw_mag(rng, 16.0, CAT_LIMIT_I, slope=0.12)
        comps, ext = star(rng, i_mag)
    else:
        build, _, lo, hi, slope = FIELD_TYPES[kind]
        i_mag = powerlaw_mag(rng, lo, hi, slope)
        comps, ext = build(rng, i_mag)[:2]
    entry = dict(u=0.0, v=0.0, kind=kind, is_lens=0, is_merger=0)
    return System(kind, 0.0, 0.0, ext, comps, [entry], dict(primary_i_mag=i_mag))


def _field_kind(rng) -> str:
    """A field type drawn by its share (:data:`FIELD_TYPES`), projections filling the rest."""
    names = list(FIELD_TYPES)
    shares = np.array([FIELD_TYPES[k][1] for k in names])
    names.append("projection")
    return names[int(rng.choice(len(names), p=np.append(shares, 1 - shares.sum())))]


def population(rng: Rng, n_objects: int, shares: dict, frame: Frame, sigma: np.ndarray,
               snr_floor: float) -> list[System]:
    """The catalogued systems of one tile (unplaced).

    Parameters
    ----------
    rng : generator of every draw.
    n_objects : catalogue entries to make.
    shares : fractions of the entries that are lenses, merger members and stars (keys
        ``lens``, ``merger``, ``star``); field galaxies and projections (:data:`FIELD_TYPES`
        shares) fill the rest.
    frame, sigma, snr_floor : the nominal tile of the lenses' arc S/N (:func:`lens`).

    Returns
    -------
    Lenses, mergers, stars, then field systems, holding ``n_objects`` entries.
    """
    systems = [lens(rng, frame, sigma, snr_floor) for _ in range(round(shares["lens"] * n_objects))]
    n_merger = 0
    while n_merger < round(shares["merger"] * n_objects):
        systems.append(merger(rng, allow_companion=round(shares["merger"] * n_objects)
                              - n_merger >= 2))
        n_merger += len(systems[-1].entries)
    systems += [field_object(rng, "star") for _ in range(round(shares["star"] * n_objects))]
    count = sum(len(s.entries) for s in systems)
    while count < n_objects:
        kind = _field_kind(rng)
        system = (projection(rng, allow_companion=n_objects - count >= 2) if kind == "projection"
                  else field_object(rng, kind))
        systems.append(system)
        count += len(system.entries)
    return systems


def faint_population(rng: Rng, n: int) -> list[System]:
    """``n`` uncatalogued background galaxies, i 23.3-26.5."""
    out = []
    for _ in range(n):
        comps, ext = faint(rng, powerlaw_mag(rng, CAT_LIMIT_I, 26.5))
        out.append(System("faint", 0.0, 0.0, ext, comps))
    return out
