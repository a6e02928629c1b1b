"""Hosts of simulated examples: photometry measured on the raw cutouts, and the selection.

A host is a real cutout of the survey that a simulator draws into (a deflector for a lensed
source, a primary for a merger). ``training_set.hosts`` selects them: clean stamps
(no flag), an aperture magnitude range and an optional colour range measured on the stamps
(through each tile's zero point), cuts on catalog columns, and an optional table of ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from skysift.errors import ConfigError
from skysift.ids import id_keys, match_ids
from skysift.io import read_table, require_columns
from skysift.sim.paint import reference_band
from skysift.sim.simulate import Host
from skysift.stamps.normalise import border_stats
from skysift.stamps.residual import residual_bands

log = logging.getLogger(__name__)

_BORDER = {"background": "border_median", "scale": "border_mad"}


def stamp_photometry(raw: np.ndarray, pixscale_arcsec: float, aperture_arcsec: float,
                     ref: int) -> dict[str, np.ndarray]:
    """Aperture flux, half-light radius and sky noise of raw stamps.

    Parameters
    ----------
    raw : (n, band, s, s) float32 in image units, NaN where invalid (counted as 0).
    pixscale_arcsec : pixel scale; aperture_arcsec : aperture radius about pixel s//2.
    ref : channel of the reference band (for the half-light radius).

    Returns
    -------
    dict of ``flux`` (n, band) background-subtracted aperture flux, ``r50_arcsec`` (n,)
    radius holding half the reference-band aperture flux (NaN if that flux is not > 0),
    ``peak_offset_arcsec`` (n,) distance of the aperture's brightest reference-band pixel
    (3 x 3 box-smoothed) from pixel s//2, ``sky_sigma`` (n, band) robust border noise
    (1.4826 x MAD) and ``background`` (n, band).
    """
    raw = np.asarray(raw, dtype=np.float32)
    n, _, s, _ = raw.shape
    stats = border_stats(raw, _BORDER)
    yy, xx = np.mgrid[:s, :s]
    radius = np.hypot(xx - s // 2, yy - s // 2).ravel() * pixscale_arcsec
    inside = np.flatnonzero(radius <= aperture_arcsec)
    inside = inside[np.argsort(radius[inside], kind="stable")]
    pix = raw.reshape(n, raw.shape[1], s * s)[:, :, inside] - stats[..., 0:1]
    pix = np.where(np.isfinite(pix), pix, 0.0)
    flux = pix.sum(axis=2)
    cum = np.cumsum(pix[:, ref], axis=1)
    total = flux[:, ref]
    first = np.argmax(cum >= 0.5 * total[:, None], axis=1)
    r50 = np.where(total > 0, radius[inside][first], np.nan)
    ref_img = np.nan_to_num(raw[:, ref] - stats[:, ref, 0, None, None].astype(np.float32))
    smooth = ndimage.uniform_filter(ref_img, size=(1, 3, 3), mode="constant")
    peak = inside[np.argmax(smooth.reshape(n, s * s)[:, inside], axis=1)]
    return {"flux": flux, "r50_arcsec": r50, "peak_offset_arcsec": radius[peak],
            "sky_sigma": stats[..., 1], "background": stats[..., 0]}


def magnitudes(flux: np.ndarray, zeropoint: np.ndarray) -> np.ndarray:
    """AB magnitudes (n, band) of fluxes (n, band) with zero points (n, band); NaN if flux <= 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, zeropoint - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)),
                        np.nan)


def colour_slope(mag: np.ndarray, lam_nm: np.ndarray, ref: int) -> np.ndarray:
    """SED slope (n,) (f_nu ~ lambda**slope) fitted to magnitudes (n, band); 0 for one band."""
    x = np.log10(lam_nm / lam_nm[ref])
    if not np.any(x != 0):
        return np.zeros(mag.shape[0])
    dm = mag - mag[:, ref:ref + 1]
    return -(np.nan_to_num(dm) * x).sum(axis=1) / (2.5 * (x * x).sum())


def make_host(flux: np.ndarray, mag: np.ndarray, slope: float, r50: float, ref: int) -> Host:
    """The :class:`skysift.sim.simulate.Host` of one object from its photometry."""
    return Host(np.asarray(flux, float), float(mag[ref]), float(slope),
                float(r50) if np.isfinite(r50) else 0.3)


def _range(values: np.ndarray, lo_hi: Sequence | None) -> np.ndarray:
    if lo_hi is None:
        return np.ones(values.shape, bool)
    lo, hi = lo_hi
    ok = np.isfinite(values)
    if lo is not None:
        ok &= values >= lo
    if hi is not None:
        ok &= values <= hi
    return ok


def reddest(mag: np.ndarray, bands: Sequence[str], ok: np.ndarray, fraction: float
            ) -> tuple[np.ndarray, float]:
    """The ``fraction`` reddest of the hosts ``ok`` (n,) and the colour threshold.

    Colour: the lens residual's bands (:func:`skysift.stamps.residual.residual_bands`, e.g.
    g - i) of the stamp magnitudes ``mag`` (n, band), so "red" is judged by the survey's
    own colour distribution (a lens deflector is a luminous red galaxy), not by a fixed cut.
    One band: ``ok`` unchanged.
    """
    pair = residual_bands(bands)
    if pair is None:
        return ok, float("nan")
    colour = mag[:, pair[0]] - mag[:, pair[1]]
    pool = ok & np.isfinite(colour)
    if not pool.any():
        return ok, float("nan")
    threshold = float(np.quantile(colour[pool], 1.0 - fraction))
    return pool & (colour >= threshold), threshold


def faint_colours(slope: np.ndarray, mag: np.ndarray, r50_arcsec: np.ndarray,
                  psf_fwhm_arcsec: np.ndarray, min_size_psf: float) -> np.ndarray:
    """SED slopes of the survey's faint galaxies: the colours lensed sources are drawn from.

    Resolved objects (half-light radius at least ``min_size_psf`` x half the PSF FWHM, as
    the hosts' cut) fainter than the median magnitude ``mag`` (n,) of them, with a finite
    slope, clipped to [-3, 5] (noisy photometry of faint stamps).
    """
    ok = np.isfinite(slope) & np.isfinite(mag) & (r50_arcsec >= min_size_psf
                                                   * psf_fwhm_arcsec / 2)
    if not ok.any():
        return np.zeros(0)
    faint = ok & (mag >= np.median(mag[ok]))
    return np.clip(slope[faint], -3.0, 5.0)


def select_hosts(config: Mapping, index: np.ndarray, ids: np.ndarray, flags: np.ndarray,
                 mag: np.ndarray, r50_arcsec: np.ndarray, psf_fwhm_arcsec: np.ndarray,
                 peak_offset_arcsec: np.ndarray) -> tuple[np.ndarray, dict]:
    """Which objects may host a simulation (``training_set.hosts``).

    Parameters
    ----------
    index, ids, flags : (n,) catalog rows, verbatim ids and cutout flags of every object.
    mag : (n, band) aperture magnitudes measured on the raw stamps.
    r50_arcsec, psf_fwhm_arcsec : (n,) stamp half-light radius and PSF FWHM (reference band).
    peak_offset_arcsec : (n,) distance of the stamp's light peak from the object.

    Returns
    -------
    (n,) bool, and {cut: number of objects it removed} for the log.
    """
    hcfg, bands = config["training_set"]["hosts"], list(config["survey"]["bands"])
    ref = reference_band(bands, config["training_set"]["reference_band"])
    cuts = {"flagged": flags != 0 if hcfg["clean"] else np.zeros(flags.shape, bool),
            "magnitude": ~_range(mag[:, ref], hcfg["mag"]),
            "point-like": np.isfinite(psf_fwhm_arcsec)
            & ~(r50_arcsec >= hcfg["min_size_psf"] * psf_fwhm_arcsec / 2),
            "off-centre peak": peak_offset_arcsec > hcfg["max_peak_offset_arcsec"]}
    if hcfg["colour"] is not None:
        b1, b2 = hcfg["colour"]["bands"]
        for b in (b1, b2):
            if b not in bands:
                raise ConfigError(f"training_set.hosts.colour.bands names '{b}', not one of "
                                  f"survey.bands {bands}")
        colour = mag[:, bands.index(b1)] - mag[:, bands.index(b2)]
        cuts["colour"] = ~_range(colour, hcfg["colour"]["range"])
    if hcfg["catalog_cuts"]:
        path = config["survey"]["catalog"]
        table = read_table(path, "catalog")
        require_columns(table, {c: c for c in hcfg["catalog_cuts"]}, path,
                        "training_set.hosts.catalog_cuts")
        for column, lo_hi in hcfg["catalog_cuts"].items():
            values = np.asarray(np.ma.filled(table[column].astype(float), np.nan))[index]
            cuts[f"catalog {column}"] = ~_range(values, lo_hi)
    if hcfg["ids"]:
        path = hcfg["ids"]
        table = read_table(path, "hosts id table")
        column = hcfg["ids_column"] or config["survey"]["columns"]["id"]
        require_columns(table, {"ids_column": column}, path, "training_set.hosts")
        found = match_ids(ids, id_keys(table[column], f"{path}: column '{column}'")) >= 0
        cuts["not in hosts.ids"] = ~found
    ok = np.ones(flags.shape, bool)
    removed = {}
    for name, bad in cuts.items():
        removed[name] = int((ok & bad).sum())
        ok &= ~bad
    return ok, removed


def draw_real_negatives(pool: np.ndarray, hosts: np.ndarray, tcfg: Mapping,
                        rng: np.random.Generator, first: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Rows (r,) of the real negatives drawn from ``pool``: the rows of ``first`` (a mask,
    e.g. graded false positives) in ``pool`` lead, then those (h,) from hosts, then the rest
    at random, up to ``max_negatives``."""
    n_real = int(pool.sum()) if tcfg["max_negatives"] is None else min(
        int(tcfg["max_negatives"]), int(pool.sum()))
    lead = (rng.permutation(np.flatnonzero(pool & first))[:n_real] if first is not None
            else np.zeros(0, np.int64))
    rest = pool.copy()
    rest[lead] = False
    from_hosts = rng.permutation(np.flatnonzero(rest & hosts))[
        :max(min(int(round(tcfg["host_negative_fraction"] * n_real)), n_real - lead.size), 0)]
    rest[from_hosts] = False
    real = np.concatenate([lead, from_hosts, rng.permutation(np.flatnonzero(rest))[
        :n_real - lead.size - from_hosts.size]]).astype(np.int64)
    return real, from_hosts
