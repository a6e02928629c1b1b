"""The lens residual removes a red deflector and keeps a blue arc."""

from __future__ import annotations

import numpy as np

from skysift.stamps.residual import lens_residual, residual_bands, residual_features

S = 33
YY, XX = np.mgrid[:S, :S] - (S - 1) / 2
R, PHI = np.hypot(YY, XX), np.arctan2(YY, XX)
GALAXY = 10.0 * np.exp(-R / 2.0)
ARC = 1.5 * np.exp(-(R - 7) ** 2 / 1.3) * np.exp(-np.angle(np.exp(1j * (PHI - 0.5))) ** 2 / 0.7)
RADII = np.array([1.5, 4.0, 9.0, 13.0])


def _stamps(arc: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g, r, i = 0.3 * GALAXY + arc * ARC, 0.6 * GALAXY + 0.3 * arc * ARC, GALAXY + 0.1 * arc * ARC
    return np.stack([np.stack([g, r, i]) + rng.normal(0, 0.1, (3, S, S)) for _ in range(n)])


def test_a_red_deflector_vanishes_from_the_residual():
    clean = np.stack([0.3 * GALAXY, 0.6 * GALAXY, GALAXY])[None]
    res = lens_residual(clean, *residual_bands(["g", "r", "i"]), core_pix=2.0)
    assert np.abs(res).max() < 1e-9 * GALAXY.max()
    with_arc = np.stack([0.3 * GALAXY + ARC, 0.6 * GALAXY, GALAXY])[None]
    res = lens_residual(with_arc, 0, 2, core_pix=2.0)[0]
    assert np.corrcoef(res.ravel(), ARC.ravel())[0, 1] > 0.99


def test_band_choice_prefers_g_and_i_whatever_the_order():
    assert residual_bands(["g", "r", "i"]) == (0, 2)
    assert residual_bands(["i", "z", "y", "g", "r"]) == (3, 0)
    assert residual_bands(["F115W", "F200W"]) == (0, 1)
    assert residual_bands(["r"]) is None
    assert np.isnan(residual_features(np.zeros((2, 1, S, S)), ["r"], RADII, 2.0, 3)).all()


def test_arcs_stand_out_in_the_residual_features():
    lenses = residual_features(_stamps(1.0, 6, 1), ["g", "r", "i"], RADII, 2.0, 3)
    plain = residual_features(_stamps(0.0, 6, 2), ["g", "r", "i"], RADII, 2.0, 3)
    peak, cover, tangential = 4, 5, 6
    assert lenses[:, peak].min() > 2 * plain[:, peak].max()
    assert lenses[:, cover].min() > plain[:, cover].max()
    assert (lenses[:, tangential] > 1.0).all()  # the arc is elongated around the centre
