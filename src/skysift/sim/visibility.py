"""Which simulated positives a person could see; the others are counted and not drawn.

A simulated positive is *visible* when the light it adds stands out of the noise and is
resolved by the tile band's PSF (FWHM from :mod:`skysift.sim.psf` or the header):

- lens: arc S/N (``arc_snr``, :func:`skysift.sim.render.snr` of the noiseless PSF-convolved
  arc over all bands) of at least ``training_set.visible_arc_snr``, and an Einstein radius
  above the PSF FWHM (an arc inside the PSF core is merged into the deflector's light);
- merger: S/N of the added companion and tidal light (``feature_snr``, the primary's light
  excluded even on blank sky) of at least ``training_set.visible_merger_snr``, and for the
  ``pair`` stage, which has no tidal features, a separation above the PSF FWHM (two
  resolved nuclei).

Hard negatives are never dropped: an invisible ring is still a ring-shaped negative.
:func:`invisible` names each reason; :func:`keep_rows` applies ``drop_invisible``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Why a simulated positive is invisible (keys of the training set's ``invisible`` counts).
REASONS = ("arc_snr", "theta_e_within_psf", "merger_snr", "pair_within_psf")


def invisible(kind: np.ndarray, label: np.ndarray, params: Mapping[str, np.ndarray],
              tcfg: Mapping) -> dict[str, np.ndarray]:
    """Per reason (:data:`REASONS`), the (m,) simulated rows that fail it.

    Parameters
    ----------
    kind : (m,) str, the simulation kind of each row (``lens``, ``merger``, ...).
    label : (m,) 0/1; only positives (1) can be invisible.
    params : (m,) float columns ``arc_snr``, ``theta_e_arcsec``, ``psf_fwhm_arcsec``,
        ``feature_snr``, ``separation_arcsec`` and bytes ``merger_stage`` (NaN / empty where
        they do not apply).
    tcfg : the ``training_set`` block (``visible_arc_snr``, ``visible_merger_snr``).
    """
    kind, pos = np.asarray(kind).astype(str), np.asarray(label) == 1
    lens, merger = pos & (kind == "lens"), pos & (kind == "merger")
    fwhm = np.asarray(params["psf_fwhm_arcsec"], float)
    with np.errstate(invalid="ignore"):
        stage = np.asarray(params["merger_stage"]).astype(str)
        return {
            "arc_snr": lens & ~(params["arc_snr"] >= tcfg["visible_arc_snr"]),
            "theta_e_within_psf": lens & ~(params["theta_e_arcsec"] > fwhm),
            "merger_snr": merger & ~(params["feature_snr"] >= tcfg["visible_merger_snr"]),
            "pair_within_psf": merger & (stage == "pair")
            & ~(params["separation_arcsec"] > fwhm)}


def keep_rows(kind: np.ndarray, label: np.ndarray, params: Mapping[str, np.ndarray],
              tcfg: Mapping) -> tuple[np.ndarray, dict[str, int]]:
    """(m,) rows to write and the counts of invisible positives per reason (+ ``total``).

    With ``tcfg["drop_invisible"]`` the invisible positives are not written; otherwise every
    row is, and the counts say how many a person could not see.
    """
    why = invisible(kind, label, params, tcfg)
    bad = np.logical_or.reduce(list(why.values())) if why else np.zeros(len(kind), bool)
    counts = {name: int(v.sum()) for name, v in why.items()}
    counts["total"] = int(bad.sum())
    return (~bad if tcfg["drop_invisible"] else np.ones(len(kind), bool)), counts


def summarise(counts: list[dict[str, int]], n_positives: int, dropped: bool) -> dict:
    """Training-set attrs: invisible positives per reason, their fraction, whether dropped.

    ``n_positives``: simulated positives rendered (visible or not).
    """
    total = {name: sum(c.get(name, 0) for c in counts) for name in REASONS + ("total",)}
    return {"invisible_positives": total, "invisible_dropped": bool(dropped),
            "visible_fraction": (1.0 - total["total"] / n_positives) if n_positives else 1.0}
