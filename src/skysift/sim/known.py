"""The mock survey's known-lens table: a literature-like sample of its lenses.

What a user brings as "known lenses" from other surveys: the mock lenses with the brightest
arcs, at positions scattered as another survey's astrometry would be, named in IAU style,
plus a few positions beyond the footprint (:func:`known_lens_table`, written by
:mod:`skysift.sim.mock` when ``survey.known_lenses`` names a table; with ``lenscat`` the
shipped catalogue is used instead, :mod:`skysift.survey.known`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS


class Tile(Protocol):
    """What the table needs of a mock tile (:class:`skysift.sim.mock.Tile`)."""

    size: int
    wcs: WCS

#: 1-sigma per-axis scatter of the known-lens positions around the catalog's (arcsec).
KNOWN_LENS_SCATTER_ARCSEC = 0.1
#: Off-survey known lenses lie this far beyond the footprint's outermost corner (arcsec).
OFF_SURVEY_MARGIN_ARCSEC = 120.0


def iau_name(prefix: str, ra_deg: float, dec_deg: float) -> str:
    """IAU-style name ``PREFIX JHHMMSS.ss+DDMMSS.s`` (truncated, not rounded, as IAU asks)."""
    ra_s = int(ra_deg % 360.0 / 15.0 * 3600.0 * 100.0)  # hundredths of a second of time
    dec_s = int(abs(dec_deg) * 3600.0 * 10.0)           # tenths of an arcsecond
    sign = "-" if dec_deg < 0 else "+"
    return (f"{prefix} J{ra_s // 360000:02d}{ra_s // 6000 % 60:02d}{ra_s % 6000 / 100:05.2f}"
            f"{sign}{dec_s // 36000:02d}{dec_s // 600 % 60:02d}{dec_s % 600 / 10:04.1f}")


def known_lens_table(config: dict, kinds: list[str], ra: np.ndarray, dec: np.ndarray,
                     truth: list[dict], tiles: list[Tile], field: WCS) -> Table:
    """A literature-like known-lens table: the brightest-arc lenses and off-survey positions.

    Parameters
    ----------
    kinds, ra, dec, truth : per catalogued object (catalog order before shuffling), kind,
        position (degrees) and truth dict (``arc_snr``, ``theta_e_arcsec``).
    tiles, field : the tiles and the field's tangent plane (arcsec pixels).

    Returns
    -------
    Table with the ``survey.known_lenses_columns`` names (ra, dec in degrees; name when
    set) and ``theta_e_arcsec`` (NaN off the survey): the ``mock.known_lenses_fraction``
    of the lenses with the highest arc S/N (ties by catalog order), then
    ``mock.known_lenses_off_survey`` positions ``OFF_SURVEY_MARGIN_ARCSEC`` and more beyond
    the footprint, each at least 30 arcsec from the previous one.
    """
    survey, mock = config["survey"], config["mock"]
    rng = np.random.default_rng([config["seed"], 0x4B4C])  # not the survey's generator
    lenses = np.flatnonzero(np.array(kinds) == "lens")
    snr = np.array([truth[i]["arc_snr"] for i in lenses])
    n_known = int(np.floor(mock["known_lenses_fraction"] * len(lenses) + 0.5))
    chosen = lenses[np.lexsort((lenses, -snr))[:n_known]]
    scatter = rng.normal(0.0, KNOWN_LENS_SCATTER_ARCSEC / 3600.0, (len(chosen), 2))
    k_dec = dec[chosen] + scatter[:, 1]
    k_ra = np.mod(ra[chosen] + scatter[:, 0] / np.cos(np.radians(k_dec)), 360.0)
    corners = np.vstack([field.wcs_world2pix(t.wcs.calc_footprint(axes=(t.size, t.size)), 0)
                         for t in tiles])
    reach = float(np.hypot(corners[:, 0], corners[:, 1]).max()) + OFF_SURVEY_MARGIN_ARCSEC
    n_off = mock["known_lenses_off_survey"]
    angle = np.radians(37.0 + 360.0 * np.arange(n_off) / max(n_off, 1))
    off = field.wcs_pix2world(np.column_stack([reach * np.cos(angle), reach * np.sin(angle)]), 0)
    ra_all = np.concatenate([k_ra, off[:, 0] if n_off else []])
    dec_all = np.concatenate([k_dec, off[:, 1] if n_off else []])
    cols = survey["known_lenses_columns"]
    table = Table()
    if cols["name"]:
        table[cols["name"]] = [iau_name("SKYSIFT", r, d) for r, d in
                               zip(ra_all, dec_all, strict=True)]
    table[cols["ra"]], table[cols["dec"]] = ra_all, dec_all
    table["theta_e_arcsec"] = np.concatenate(
        [[truth[i]["theta_e_arcsec"] for i in chosen], np.full(n_off, np.nan)])
    return table
