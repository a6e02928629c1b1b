"""Property tests (hypothesis, derandomised so the suite stays deterministic)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skysift import metrics
from skysift.learn.symmetry import D4_ELEMENTS, d4_apply, d4_compose, d4_inverse

PROFILE = settings(derandomize=True, max_examples=60, deadline=None)

scores_labels = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-5, 5), min_size=n, max_size=n),  # small ints: many ties
        st.lists(st.integers(0, 1), min_size=n, max_size=n)))


def brute_tpr_at_fp(scores, labels, n_fp):
    """Reference: the loosest threshold t with #neg(score >= t) <= n_fp; TPR = #pos(score >= t)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    best = 0.0
    for t in np.r_[np.unique(scores), np.inf]:
        if (neg >= t).sum() <= n_fp:
            best = max(best, (pos >= t).mean())
    return best


@PROFILE
@given(scores_labels)
def test_tpr0_tpr10_match_brute_force(data):
    scores, labels = data
    if sum(labels) == 0:
        return
    assert metrics.tpr0(scores, labels) == brute_tpr_at_fp(scores, labels, 0)
    assert metrics.tpr10(scores, labels) == brute_tpr_at_fp(scores, labels, 9)


@PROFILE
@given(scores_labels, st.sampled_from([np.exp, np.arctan, lambda x: 3 * x**3 + x - 7]))
def test_ranking_metrics_invariant_under_increasing_maps(data, fn):
    scores, labels = data
    if 0 < sum(labels) < len(labels):
        s = np.asarray(scores, float)
        for name, metric in metrics.METRICS.items():
            assert metric(fn(s), labels) == metric(s, labels), name


@PROFILE
@given(st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_d4_group_laws_hold_exactly(channels, ny, nx, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, ny, nx, generator=gen)
    for a in D4_ELEMENTS:
        assert torch.equal(d4_apply(d4_apply(x, a), d4_inverse(a)), x)  # inverse
        for b in D4_ELEMENTS:
            assert torch.equal(d4_apply(d4_apply(x, b), a), d4_apply(x, d4_compose(a, b)))
    assert torch.equal(d4_apply(x, 0), x)  # identity
    compose = [[d4_compose(a, b) for b in D4_ELEMENTS] for a in D4_ELEMENTS]
    for row in compose:  # a Latin square: each element once per row and column
        assert sorted(row) == list(D4_ELEMENTS)
    for col in zip(*compose, strict=True):
        assert sorted(col) == list(D4_ELEMENTS)


@PROFILE
@given(st.integers(1, 12), st.floats(-15, 40, allow_nan=False), st.floats(-15, 40, allow_nan=False),
       st.integers(0, 2**31 - 1))
def test_cutouts_any_position_and_size(size, x, y, seed):
    """Right shape; EDGE exactly when the stamp leaves the image; pixels copied verbatim."""
    from skysift.stamps.cut import extract
    from skysift.stamps.flags import EDGE
    ny, nx = 20, 25
    images = np.random.default_rng(seed).normal(size=(2, ny, nx)).astype(np.float32)
    stamps, flags = extract(images, np.array([[x, y]]), size)
    assert stamps.shape == (1, 2, size, size) and stamps.dtype == np.float32
    px, py = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    x0, y0 = px - size // 2, py - size // 2
    inside = x0 >= 0 and y0 >= 0 and x0 + size <= nx and y0 + size <= ny
    assert bool(flags[0] & EDGE) == (not inside)
    yy, xx = np.mgrid[y0:y0 + size, x0:x0 + size]
    valid = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
    assert np.isnan(stamps[0][:, ~valid]).all()
    np.testing.assert_array_equal(stamps[0][:, valid], images[:, yy[valid], xx[valid]])
