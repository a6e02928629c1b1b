"""The realism score: a fixed discriminator's cross-validated AUROC, simulations vs real."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from skysift.sim.realism import comparisons, realism
from skysift.sim.trainfile import HARD, LABELLED, REAL, SIMULATED

S = 32
YY, XX = np.mgrid[:S, :S] - (S - 1) / 2
R, PHI = np.hypot(YY, XX), np.arctan2(YY, XX)
ATTRS = {"bands": ["g", "r", "i"], "pixscale_arcsec": 0.263, "psf_fwhm_arcsec": [1.0, 1.0, 1.0]}


def _lens(rng: np.random.Generator, psf: bool) -> np.ndarray:
    """A red galaxy with a blue arc at a random radius and angle, noise of the survey."""
    galaxy = rng.uniform(5, 15) * np.exp(-R / rng.uniform(1.5, 3.0))
    ring = np.abs(R - rng.uniform(5, 9)) < 0.5
    arc = 3.0 * ring * (np.abs(np.angle(np.exp(1j * (PHI - rng.uniform(-3, 3))))) < 1.0)
    if psf:  # the survey's seeing; the unrealistic simulation skips it
        arc = gaussian_filter(arc, 1.6)
    bands = [0.3 * galaxy + arc, 0.6 * galaxy + 0.3 * arc, galaxy + 0.1 * arc]
    return np.stack([gaussian_filter(b, 0.8) if psf else b for b in bands]) \
        + rng.normal(0, 0.1, (3, S, S))


def _set(n_sim: int, n_real: int, sim_psf: bool, seed: int):
    rng = np.random.default_rng(seed)
    images = np.stack([_lens(rng, sim_psf) for _ in range(n_sim)]
                      + [_lens(rng, True) for _ in range(n_real)]).astype(np.float32)
    origin = np.r_[np.full(n_sim, SIMULATED), np.full(n_real, LABELLED)].astype(np.uint8)
    return images, np.ones(n_sim + n_real, np.uint8), origin, np.zeros(n_sim + n_real, "S16")


def test_arcs_without_psf_are_recognised_as_simulations():
    images, label, origin, sim = _set(60, 60, sim_psf=False, seed=1)
    score = realism(images, label, origin, sim, ATTRS, seed=0)["positives"]
    assert score["auroc"] > 0.9
    lo, hi = score["auroc_ci"]
    assert 0.8 < lo <= score["auroc"] <= hi <= 1.0
    assert (score["n_simulated"], score["n_real"]) == (60, 60)
    assert len(score["top_features"]) == 8


def test_real_objects_split_in_two_are_indistinguishable():
    images, label, origin, sim = _set(60, 60, sim_psf=True, seed=2)  # both halves "real"
    score = realism(images, label, origin, sim, ATTRS, seed=0)["positives"]
    assert 0.3 < score["auroc"] < 0.7
    lo, hi = score["auroc_ci"]
    assert lo < 0.5 < hi and hi - lo > 0.1  # 60 vs 60: a wide interval that holds 0.5


def test_each_hard_negative_family_is_compared_with_the_real_negatives():
    label = np.array([1, 1, 0, 0, 0, 0, 0], np.uint8)
    origin = np.array([SIMULATED, LABELLED, LABELLED, REAL, HARD, HARD, HARD], np.uint8)
    sim = np.array([b"lens", b"", b"", b"", b"ring", b"arm", b"ring"], "S16")
    got = comparisons(label, origin, sim)
    assert set(got) == {"positives", "hard:arm", "hard:ring"}
    assert got["hard:ring"][0].tolist() == [4, 6] and got["hard:ring"][1].tolist() == [2, 3]
    assert got["positives"][0].tolist() == [0] and got["positives"][1].tolist() == [1]
