"""Binned completeness, Wilson intervals and purity at a stated prevalence, on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from skysift import metrics
from skysift.errors import ConfigError
from skysift.evaluate import completeness


def test_wilson_interval_matches_known_values():
    # Wilson 95 % interval of 8/10 (z = 1.959964): the textbook 0.4902 to 0.9433
    lo, hi = completeness.wilson_interval(8, 10, 0.95)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo, hi = completeness.wilson_interval(0, 20, 0.95)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    lo, hi = completeness.wilson_interval(20, 20, 0.95)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.1611, abs=1e-4)
    assert np.isnan(completeness.wilson_interval(0, 0, 0.95)).all()
    # a wider confidence level gives a wider interval
    assert completeness.wilson_interval(8, 10, 0.99)[0] < 0.4902


def test_numeric_bins_are_half_open_with_a_closed_last_bin():
    idx = completeness.bin_numeric([0.5, 0.99, 1.0, 2.9, 3.0, 3.01, 0.49, np.nan], [0.5, 1, 3])
    assert idx.tolist() == [0, 0, 1, 1, 1, -1, -1, -1]


def test_completeness_of_a_constructed_case():
    # 10 positives: theta 0.7 (x3: 2 detected), 1.2 (x4: 4 detected), 2.5 (x2: 0), NaN (x1)
    theta = np.array([0.7, 0.7, 0.7, 1.2, 1.2, 1.2, 1.2, 2.5, 2.5, np.nan])
    det = np.array([1, 1, 0, 1, 1, 1, 1, 0, 0, 1], dtype=bool)
    res = completeness.completeness_by_bin(theta, det, [0.5, 1.0, 2.0, 3.0], 0.95,
                                           ["small", "mid", "big"])
    assert res["kind"] == "numeric" and res["n_pos"] == 10 and res["n_unbinned"] == 1
    got = [(b["name"], b["n_pos"], b["n_detected"]) for b in res["bins"]]
    assert got == [("small", 3, 2), ("mid", 4, 4), ("big", 2, 0)]
    assert [b["completeness"] for b in res["bins"]] == pytest.approx([2 / 3, 1.0, 0.0])
    assert sum(b["n_pos"] for b in res["bins"]) + res["n_unbinned"] == res["n_pos"]
    assert res["bins"][0]["completeness_ci"] == pytest.approx(
        list(completeness.wilson_interval(2, 3, 0.95)))
    assert res["bins"][0]["lo"] == 0.5 and res["bins"][2]["hi"] == 3.0
    default = completeness.completeness_by_bin(theta, det, [0.5, 1.0, 2.0, 3.0], 0.95)
    assert [b["name"] for b in default["bins"]] == ["[0.5, 1)", "[1, 2)", "[2, 3)"]


def test_categorical_bins_by_distinct_values_and_empty_bins_are_nan():
    stage = np.array(["pair", "coalescing", "", "pair", "interacting"])
    det = np.array([1, 0, 1, 0, 1], dtype=bool)
    res = completeness.completeness_by_bin(stage, det, None, 0.9)
    assert res["kind"] == "categorical" and res["n_unbinned"] == 1
    got = {b["name"]: (b["n_pos"], b["n_detected"]) for b in res["bins"]}
    assert got == {"coalescing": (1, 0), "interacting": (1, 1), "pair": (2, 1)}
    empty = completeness.completeness_by_bin(np.array([5.0]), np.array([True]), [0, 1, 2], 0.9)
    assert empty["n_unbinned"] == 1 and np.isnan(empty["bins"][0]["completeness"])


def test_purity_formula():
    # t = 0.5, f = 0.01, pi = 0.001: 5e-4 / (5e-4 + 0.00999) = 0.04766
    assert completeness.purity(0.5, 0.01, 1e-3) == pytest.approx(5e-4 / (5e-4 + 0.01 * 0.999))
    assert completeness.purity(0.3, 0.0, 1e-3) == 1.0
    assert np.isnan(completeness.purity(0.0, 0.0, 1e-3))
    # at the test split's own balance (pi = n_pos / n) purity is the observed precision
    t, f, n_pos, n_neg = 0.8, 0.1, 40, 60
    tp, fp = t * n_pos, f * n_neg
    assert completeness.purity(t, f, n_pos / (n_pos + n_neg)) == pytest.approx(tp / (tp + fp))
    curve = completeness.purity(np.array([0.5, 1.0]), np.array([0.0, 1.0]), 0.01)
    assert curve == pytest.approx([1.0, 0.01])


def test_operating_points_agree_with_the_tpr_metrics():
    rng = np.random.default_rng(3)
    scores = np.r_[rng.normal(2, 1, 60), rng.normal(0, 1, 400)]
    labels = np.r_[np.ones(60), np.zeros(400)].astype(int)
    for n_fp, metric in ((0, metrics.tpr0), (9, metrics.tpr10)):
        op = completeness.operating_point(scores, labels, n_fp, 1e-3, 0.95)
        assert op["tpr"] == metric(scores, labels) and op["n_fp"] <= n_fp
        assert op["fpr"] == op["n_fp"] / 400
        assert op["purity_ci"][0] <= op["purity"] <= op["purity_ci"][1]
    assert completeness.fp_allowed(0.01, 300) == 3 and completeness.fp_allowed(0.01, 99) == 0
    assert completeness.threshold_at_fp(np.array([1.0, 3.0, 2.0]), 1) == 2.0
    assert completeness.threshold_at_fp(np.array([1.0]), 1) == -np.inf


def test_summarize_reports_a_missing_column_as_unavailable():
    scores = np.array([3.0, 2.0, 0.5, 1.0, 0.0, -1.0])
    labels = np.array([1, 1, 1, 0, 0, 0])
    specs = [{"name": "theta", "column": "theta_e_arcsec", "edges": [0, 1, 2]},
             {"name": "snr", "column": "arc_snr", "edges": [0, 10]}]
    cols = {"theta": np.array([0.5, 1.5, 1.5, np.nan, np.nan, np.nan]),
            "snr": "column 'arc_snr' is not in the labels table t.fits"}
    out = completeness.summarize(scores, labels, specs, cols, 0.0, 0.01, 0.95)
    comp = out["completeness"]
    # FPR target 0 -> threshold = top negative 1.0: the positives at 3 and 2 are detected
    assert comp["threshold_logit"] == 1.0 and comp["tpr"] == pytest.approx(2 / 3)
    theta = comp["bins"]["theta"]
    assert theta["available"] and [b["n_detected"] for b in theta["bins"]] == [1, 1]
    assert [b["n_pos"] for b in theta["bins"]] == [1, 2]
    assert comp["bins"]["snr"] == {"column": "arc_snr", "available": False,
                                   "reason": "column 'arc_snr' is not in the labels table t.fits"}
    assert out["purity"]["tpr0"]["purity"] == 1.0
    one_class = completeness.summarize(scores[:3], labels[:3], specs, cols, 0.01, 0.01, 0.95)
    assert one_class["purity"]["tpr0"] is None
    assert not one_class["completeness"]["bins"]["theta"]["available"]


def test_bad_bin_specs_raise_config_errors():
    completeness.check_spec({"edges": None}, "x")
    with pytest.raises(ConfigError, match="increase"):
        completeness.check_spec({"edges": [0, 1, 1]}, "evaluate.completeness_bins[0]")
    with pytest.raises(ConfigError, match="one name per interval"):
        completeness.check_spec({"edges": [0, 1, 2], "bin_names": ["a"]}, "x")
    with pytest.raises(ConfigError, match="bin_names"):
        completeness.check_spec({"edges": None, "bin_names": ["a"]}, "x")
