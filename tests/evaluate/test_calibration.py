"""Reliability diagram and ECE of probabilities at the test split's own prevalence."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.evaluate import calibration
from skysift.score import prior


def _calibrated(n, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return p, (rng.uniform(size=n) < p).astype(np.int8)


@pytest.mark.parametrize("binning", calibration.BINNINGS)
def test_ece_of_a_calibrated_set_is_near_zero(binning):
    p, y = _calibrated(40_000)
    assert calibration.ece(p, y, 10, binning) < 0.015


@pytest.mark.parametrize("binning", calibration.BINNINGS)
def test_ece_of_an_overconfident_set_is_large(binning):
    p, y = _calibrated(40_000)
    over = np.where(p > 0.5, 1 - 0.2 * (1 - p), 0.2 * p)  # pushed towards 0 and 1
    assert calibration.ece(over, y, 10, binning) > 0.1


def test_ece_by_hand():
    # two equal-count bins: {0.1, 0.2} with labels {0, 1} -> |0.15 - 0.5| ; {0.8, 0.9} {1, 1}
    p = np.array([0.9, 0.1, 0.8, 0.2])
    y = np.array([1, 0, 1, 1])
    want = (2 * abs(0.15 - 0.5) + 2 * abs(0.85 - 1.0)) / 4
    assert calibration.ece(p, y, 2, "equal_count") == pytest.approx(want)
    rel = calibration.reliability(p, y, 2, "equal_width", 0.95)
    assert rel["n"].tolist() == [2, 2] and rel["frac_pos"] == pytest.approx([0.5, 1.0])
    assert rel["p_mean"] == pytest.approx([0.15, 0.85]) and rel["ece"] == pytest.approx(want)
    # equal_width bins with nothing in them are dropped
    assert calibration.reliability(p, y, 10, "equal_width", 0.95)["n"].size == 4


def test_calibrate_uses_the_test_prevalence_and_bootstraps():
    # logits that are balanced-set log-odds: at the test prevalence the shifted probability is
    # the true one, so the ECE is small; shifting the logits by +3 breaks it
    rng = np.random.default_rng(1)
    n_pos, n_neg = 3000, 12000
    z = np.r_[rng.normal(1.0, 1.0, n_pos), rng.normal(-1.0, 1.0, n_neg)]
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.int8)
    # for unit-variance Gaussians at +-1 the balanced log-odds is 2 x
    good = calibration.calibrate(2 * z, y, 10, "equal_count", 50, 0.9, 0)
    assert good["prevalence_test"] == pytest.approx(0.2)
    assert good["ece"] < 0.02 and sum(b["n"] for b in good["bins"]) == y.size
    lo, hi = good["ece_ci"]
    assert 0 <= lo <= hi < 0.05
    bad = calibration.calibrate(2 * z + 3, y, 10, "equal_count", 50, 0.9, 0)
    assert bad["ece"] > 0.1
    prob = prior.probability(2 * z, 0.2)
    assert good["bins"][-1]["p_mean"] == pytest.approx(np.sort(prob)[-1500:].mean())


def test_calibrate_without_both_classes_is_nan_and_bootstrap_is_seeded():
    out = calibration.calibrate(np.zeros(5), np.zeros(5), 10, "equal_count", 20, 0.9, 0)
    assert np.isnan(out["ece"]) and out["bins"] == []
    p, y = _calibrated(2000, seed=4)
    a = calibration.ece_bootstrap(p, y, 10, "equal_count", 30, 0.9, 7)
    assert a == calibration.ece_bootstrap(p, y, 10, "equal_count", 30, 0.9, 7)
    assert np.isnan(calibration.ece_bootstrap(p, y, 10, "equal_count", 0, 0.9, 7)).all()
    with pytest.raises(ValueError, match="binning"):
        calibration.ece(p, y, 10, "quantile")


def test_reliability_png_is_written(tmp_path):
    p, y = _calibrated(500)
    cal = calibration.calibrate(prior.logit(np.clip(p, 1e-6, 1 - 1e-6)), y, 5, "equal_count",
                                10, 0.9, 0)
    none = calibration.calibrate(np.zeros(3), np.zeros(3), 5, "equal_count", 10, 0.9, 0)
    path = tmp_path / "r.png"
    calibration.plot_reliability({"lens": {"a": cal, "b": none}}, path)
    assert path.read_bytes().startswith(b"\x89PNG") and not list(tmp_path.glob("*.partial"))


def test_ece_null_is_the_small_sample_floor_of_a_calibrated_model():
    # 60 objects in 10 bins: a calibrated model's ECE is far from 0, and ece_null says so
    p, y = _calibrated(60, seed=5)
    mean, (lo, hi) = calibration.ece_null(p, 10, "equal_count", 300, 0.9, 1)
    assert 0.05 < lo < mean < hi
    draws = [calibration.ece(p, (np.random.default_rng(s).random(60) < p), 10, "equal_count")
             for s in range(300)]
    assert mean == pytest.approx(np.mean(draws), rel=0.1)
    big, by = _calibrated(20_000, seed=6)
    over = np.where(big > 0.5, 1 - 0.2 * (1 - big), 0.2 * big)
    out = calibration.calibrate(prior.logit(np.clip(over, 1e-9, 1 - 1e-9)), by, 10,
                                "equal_count", 20, 0.9, 0)
    assert out["ece"] > 3 * out["ece_null_ci"][1]
