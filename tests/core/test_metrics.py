"""Ranking metrics against hand-computed values (ties included) and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from skysift import metrics
from skysift.errors import DataError

# 12 negatives with a tie at the 10th/11th highest (3, 3) and positives on either side of
# the thresholds, one of them tied with the 10th highest negative.
NEG12 = [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 3, 1]
POS5 = [12.5, 11, 10.5, 3.5, 3.0]


def _case(pos, neg):
    scores = np.array(list(pos) + list(neg), dtype=float)
    labels = np.array([1] * len(pos) + [0] * len(neg))
    return scores, labels


# --- AUROC -----------------------------------------------------------------------------

def test_auroc_small_case():
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, *) two wins -> 3/4
    assert metrics.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75


def test_auroc_ties_count_one_half():
    # (1 vs 1) tie 0.5, (1 vs 2) 0, (2 vs 1) 1, (2 vs 2) tie 0.5 -> 2/4
    assert metrics.auroc([1, 1, 2, 2], [0, 1, 0, 1]) == 0.5
    # (0.5 vs 0.5) tie 0.5, (0.9 vs 0.5) 1 -> 1.5/2
    assert metrics.auroc([0.5, 0.5, 0.9], [0, 1, 1]) == 0.75


def test_auroc_all_tied_is_one_half():
    assert metrics.auroc(np.full(7, 0.3), [0, 1, 1, 0, 1, 0, 0]) == 0.5


def test_auroc_perfect_and_reversed():
    assert metrics.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0


def test_auroc_nan_without_both_classes():
    assert np.isnan(metrics.auroc([0.1, 0.2], [1, 1]))
    assert np.isnan(metrics.auroc([0.1, 0.2], [0, 0]))
    assert np.isnan(metrics.auroc([], []))


def test_auroc_equals_sklearn_on_random_data_with_ties():
    rng = np.random.default_rng(3)
    for n in (5, 40, 333):
        scores = rng.integers(0, 6, n).astype(float)  # heavy ties
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        assert metrics.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores),
                                                              abs=1e-12)


def test_auroc_weighted_unit_weights_replication_and_sklearn():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    labels = (rng.uniform(size=300) < 0.3).astype(int)
    n_neg = int((labels == 0).sum())
    assert metrics.auroc_weighted(scores, labels, np.ones(n_neg)) == pytest.approx(
        metrics.auroc(scores, labels), abs=1e-12)
    w = rng.integers(0, 4, n_neg)  # an integer weight counts a negative that many times
    rep = np.concatenate([scores[labels == 1], np.repeat(scores[labels == 0], w)])
    rep_labels = np.r_[np.ones(int(labels.sum())), np.zeros(int(w.sum()))].astype(int)
    assert metrics.auroc_weighted(scores, labels, w) == pytest.approx(
        metrics.auroc(rep, rep_labels), abs=1e-12)
    sw = np.ones(labels.size)
    sw[labels == 0] = w
    assert metrics.auroc_weighted(scores, labels, w) == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=sw), abs=1e-12)
    # weights move the value: all weight on the top negative vs on the bottom one
    top = np.zeros(n_neg)
    top[np.argmax(scores[labels == 0])] = 1
    assert metrics.auroc_weighted(scores, labels, top) < metrics.auroc(scores, labels)
    assert np.isnan(metrics.auroc_weighted(scores, labels, np.zeros(n_neg)))
    with pytest.raises(DataError, match="neg_weights"):
        metrics.auroc_weighted(scores, labels, -np.ones(n_neg))


def test_auroc_accepts_bool_and_float32():
    scores = np.array([0.1, 0.4, 0.35, 0.8], dtype=np.float32)
    assert metrics.auroc(scores, np.array([False, False, True, True])) == 0.75


@settings(derandomize=True, max_examples=50, deadline=None)
@given(data=st.data())
def test_auroc_invariant_under_strictly_increasing_transform(data):
    n = data.draw(st.integers(2, 30))
    scores = np.array(data.draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    # any strictly increasing map of {0..8}: sorted distinct floats indexed by the score
    values = data.draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=9,
                                max_size=9, unique=True))
    transformed = np.sort(values)[scores]
    before = metrics.auroc(scores, labels)
    after = metrics.auroc(transformed, labels)
    if np.isnan(before):
        assert np.isnan(after)
    else:
        assert after == pytest.approx(before, abs=1e-12)
        assert metrics.auroc(np.exp(scores / 3.0), labels) == pytest.approx(before, abs=1e-12)
        assert metrics.tpr0(transformed, labels) == metrics.tpr0(scores, labels)
        assert metrics.tpr10(transformed, labels) == metrics.tpr10(scores, labels)


# --- TPR at a number of false positives ------------------------------------------------

def test_tpr0_counts_only_positives_strictly_above_top_negative():
    # the top negative is 0.6; the positive tied with it does not count -> 1 of 3
    scores, labels = _case(pos=[0.9, 0.6, 0.2], neg=[0.6, 0.1])
    assert metrics.tpr0(scores, labels) == pytest.approx(1 / 3)


def test_tpr0_hand_case_with_twelve_negatives():
    scores, labels = _case(POS5, NEG12)
    assert metrics.tpr0(scores, labels) == pytest.approx(1 / 5)  # only 12.5 > 12


def test_tpr10_hand_case_with_twelve_negatives():
    # threshold = 10th highest negative = 3 (tied with the 11th); positives > 3: 12.5, 11,
    # 10.5, 3.5 -> 4/5; the positive at exactly 3 does not count
    scores, labels = _case(POS5, NEG12)
    assert metrics.tpr10(scores, labels) == pytest.approx(4 / 5)
    # at most 9 false positives really is the loosest admissible threshold
    assert ((np.array(NEG12) > 3).sum(), (np.array(NEG12) >= 3).sum()) == (9, 11)


def test_tpr_at_fp_tied_negatives_at_threshold():
    # negatives 5, 5: any threshold admitting the first admits both, so n_fp=1 equals n_fp=0
    scores, labels = _case(pos=[6, 5.5, 4], neg=[5, 5, 1])
    assert metrics.tpr_at_fp(scores, labels, 0) == pytest.approx(2 / 3)
    assert metrics.tpr_at_fp(scores, labels, 1) == pytest.approx(2 / 3)
    assert metrics.tpr_at_fp(scores, labels, 2) == 1.0


def test_tpr10_with_fewer_than_ten_negatives_is_one():
    scores, labels = _case(pos=[0.0, -5.0], neg=[1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert metrics.tpr10(scores, labels) == 1.0
    assert metrics.tpr0(scores, labels) == 0.0


def test_tpr_nan_without_positives():
    assert np.isnan(metrics.tpr0([0.1, 0.2], [0, 0]))
    assert np.isnan(metrics.tpr10([0.1, 0.2], [0, 0]))


# --- ROC curve -------------------------------------------------------------------------

def test_roc_curve_points_with_ties():
    fpr, tpr, thr = metrics.roc_curve([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.1])
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 1, 1])
    # trapezoid area of the curve is the tie-aware AUROC
    assert np.trapezoid(tpr, fpr) == metrics.auroc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1])


def test_roc_curve_agrees_with_sklearn():
    rng = np.random.default_rng(11)
    scores = np.round(rng.normal(size=200), 1)  # ties
    labels = (rng.random(200) < 0.3).astype(int)
    fpr, tpr, thr = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_curve_empty_input_is_the_origin():
    fpr, tpr, thr = metrics.roc_curve([], [])
    assert (fpr.tolist(), tpr.tolist(), thr.tolist()) == ([0.0], [0.0], [np.inf])


# --- bootstrap -------------------------------------------------------------------------

@pytest.fixture
def noisy_case():
    rng = np.random.default_rng(5)
    labels = (rng.random(300) < 0.25).astype(int)
    scores = np.round(rng.normal(size=300) + 1.5 * labels, 2)
    return scores, labels


def test_bootstrap_point_values_and_intervals_contain_them(noisy_case):
    scores, labels = noisy_case
    out = metrics.bootstrap(scores, labels, n_boot=200, ci=0.9, seed=1)
    assert set(out) == {"auroc", "tpr0", "tpr10"}
    assert out["auroc"]["value"] == metrics.auroc(scores, labels)
    assert out["tpr0"]["value"] == metrics.tpr0(scores, labels)
    assert out["tpr10"]["value"] == metrics.tpr10(scores, labels)
    for name, m in out.items():
        assert m["lo"] <= m["value"] <= m["hi"], name
        assert 0.0 <= m["lo"] <= m["hi"] <= 1.0, name
    assert out["auroc"]["hi"] - out["auroc"]["lo"] > 0.01  # a real spread, not a point


def test_bootstrap_reproducible_from_seed(noisy_case):
    scores, labels = noisy_case
    a = metrics.bootstrap(scores, labels, n_boot=50, ci=0.95, seed=7)
    b = metrics.bootstrap(scores, labels, n_boot=50, ci=0.95, seed=7)
    c = metrics.bootstrap(scores, labels, n_boot=50, ci=0.95, seed=8)
    assert a == b
    assert (a["auroc"]["lo"], a["auroc"]["hi"]) != (c["auroc"]["lo"], c["auroc"]["hi"])


def test_bootstrap_wider_ci_is_wider(noisy_case):
    scores, labels = noisy_case
    narrow = metrics.bootstrap(scores, labels, n_boot=100, ci=0.5, seed=2)["auroc"]
    wide = metrics.bootstrap(scores, labels, n_boot=100, ci=0.99, seed=2)["auroc"]
    assert wide["lo"] < narrow["lo"] <= narrow["hi"] < wide["hi"]


def test_bootstrap_is_stratified():
    # one positive among many negatives: an unstratified resample would often lose it
    # (AUROC NaN); stratified, every resample keeps it and the interval stays finite
    scores = np.r_[5.0, np.arange(40.0) / 10]
    labels = np.r_[1, np.zeros(40, int)]
    out = metrics.bootstrap(scores, labels, n_boot=100, ci=0.95, seed=0)
    assert out["auroc"] == {"value": 1.0, "lo": 1.0, "hi": 1.0}
    assert out["tpr0"] == {"value": 1.0, "lo": 1.0, "hi": 1.0}


def test_bootstrap_without_resamples_or_classes_gives_nan_intervals():
    out = metrics.bootstrap([0.1, 0.9], [0, 1], n_boot=0, ci=0.95, seed=0)
    assert out["auroc"]["value"] == 1.0
    assert np.isnan(out["auroc"]["lo"]) and np.isnan(out["auroc"]["hi"])
    out = metrics.bootstrap([0.1, 0.9], [1, 1], n_boot=20, ci=0.95, seed=0)
    assert np.isnan(out["auroc"]["value"]) and np.isnan(out["auroc"]["lo"])


# --- bad inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("scores, labels", [
    ([0.1, 0.2, 0.3], [0, 1]),                  # lengths differ
    ([[0.1, 0.2]], [[0, 1]]),                   # 2-D
    ([0.1, 0.2], [0, 2]),                       # label not 0/1
    ([0.1, 0.2], [0.5, 1]),                     # fractional label
    ([0.1, np.nan], [0, 1]),                    # NaN score
    ([0.1, np.inf], [0, 1]),                    # infinite score
    (["a", "b"], [0, 1]),                       # not numbers
])
@pytest.mark.parametrize("fn", [metrics.auroc, metrics.tpr0, metrics.tpr10, metrics.roc_curve])
def test_bad_inputs_raise_data_error(fn, scores, labels):
    with pytest.raises(DataError):
        fn(scores, labels)


@pytest.mark.parametrize("kwargs", [dict(n_boot=-1), dict(ci=0.0), dict(ci=1.0), dict(ci=1.5)])
def test_bad_bootstrap_parameters_raise_data_error(kwargs):
    args = dict(n_boot=10, ci=0.9, seed=0) | kwargs
    with pytest.raises(DataError):
        metrics.bootstrap([0.1, 0.2, 0.3], [0, 1, 1], **args)


@pytest.mark.parametrize("n_fp", [-1, 1.5])
def test_bad_n_fp_raises_data_error(n_fp):
    with pytest.raises(DataError):
        metrics.tpr_at_fp([0.1, 0.2, 0.3], [0, 1, 1], n_fp)
