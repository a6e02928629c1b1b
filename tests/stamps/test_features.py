"""Classical features on analytic images: concentration, asymmetry, Gini, D4-invariant HoG."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, special

from skysift.stamps.features import compute_features, feature_names, gini, growth_radii, hog_pooled
from skysift.stamps.featurespec import FeatureSpec

SPEC = FeatureSpec(bands=("g", "r", "i"), pixscale_arcsec=0.263, psf_fwhm_arcsec=(1.1, 0.95, 0.9),
                   radii_arcsec=(0.5, 1.0, 1.5, 2.5, 4.0), border_pix=4, smooth_arcsec=1.0,
                   seg_nsigma=1.0, hog_bins=6)


def d4(x: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of the last two axes."""
    rots = [np.rot90(x, k, axes=(-2, -1)) for k in range(4)]
    return [np.ascontiguousarray(r) for r in rots + [r[..., ::-1] for r in rots]]


def sersic_image(size: int, r_e: float, n: float, oversample: int = 6) -> np.ndarray:
    """A circular Sérsic profile centred on the stamp centre, integrated over each pixel."""
    b = special.gammaincinv(2 * n, 0.5)
    sub = (np.arange(size * oversample) + 0.5) / oversample - 0.5 - (size - 1) / 2
    r = np.hypot(*np.meshgrid(sub, sub, indexing="ij"))
    img = np.exp(-b * ((r / r_e) ** (1 / n) - 1))
    return img.reshape(size, oversample, size, oversample).mean(axis=(1, 3))


def analytic_concentration(r_e: float, n: float, r_max: float) -> float:
    """5 log10(r80/r20) of a Sérsic profile whose total is the flux within r_max."""
    b = special.gammaincinv(2 * n, 0.5)

    def enclosed(r):
        return integrate.quad(lambda t: t * np.exp(-b * (t / r_e) ** (1 / n)), 0, r,
                              limit=200)[0]

    total = enclosed(r_max)
    r20 = optimize.brentq(lambda r: enclosed(r) - 0.2 * total, 1e-6, r_max)
    r80 = optimize.brentq(lambda r: enclosed(r) - 0.8 * total, 1e-6, r_max)
    return 5 * np.log10(r80 / r20)


def test_feature_names_match_the_columns():
    x = np.random.default_rng(0).normal(size=(3, 3, 48, 48)).astype(np.float32)
    feats = compute_features(x, SPEC)
    names = feature_names(SPEC)
    assert feats.shape == (3, len(names)) and len(set(names)) == len(names)
    assert feats.dtype == np.float32


def test_concentration_of_de_vaucouleurs_profile_matches_its_analytic_value():
    size, r_e = 161, 16.0
    img = sersic_image(size, r_e, 4.0)
    r_max = size / 2 - 3  # the measuring radius of compute_features
    expected = analytic_concentration(r_e, 4.0, r_max)
    ry, rx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(ry, rx)
    inside = r < r_max
    r20, r80 = growth_radii(img[inside], r[inside], (0.2, 0.8))
    assert 5 * np.log10(r80 / r20) == pytest.approx(expected, abs=0.05)
    # the same through the batched features (every band and det carry the profile); the
    # profile is cut at r_max so that the sky (border median) is zero, as after preprocess
    spec = FeatureSpec(**{**SPEC.__dict__, "radii_arcsec": (5.0, 10.0), "border_pix": 2})
    cut = np.where(inside, img, 0.0)
    feats = compute_features(np.repeat(cut[None, None], 3, axis=1).astype(np.float32), spec)
    conc = feats[0, feature_names(spec).index("conc_det")]
    assert conc == pytest.approx(expected, abs=0.05)
    assert expected == pytest.approx(5.0, abs=0.6)  # n=4 is concentrated: C ~ 5 (Conselice 03)


def test_concentration_of_a_gaussian_is_lower_than_de_vaucouleurs():
    size = 96
    ry, rx = np.mgrid[:size, :size] - (size - 1) / 2
    gauss = np.exp(-0.5 * (ry ** 2 + rx ** 2) / 6.0 ** 2)
    feats = compute_features(np.repeat(gauss[None, None], 3, 1).astype(np.float32), SPEC)
    # Gaussian: r_f = sigma sqrt(-2 ln(1-f)) -> C = 5 log10(sqrt(ln 5 / ln 1.25)) = 2.146
    assert feats[0, feature_names(SPEC).index("conc_det")] == pytest.approx(2.146, abs=0.03)


def _blob(size, y, x, sigma, amp=1.0):
    ry, rx = np.mgrid[:size, :size]
    return amp * np.exp(-0.5 * ((ry - y) ** 2 + (rx - x) ** 2) / sigma ** 2)


def test_asymmetry_of_point_symmetric_image_is_zero_and_of_lopsided_one_large():
    size = 48
    c = (size - 1) / 2
    names = feature_names(SPEC)
    sym = (_blob(size, c, c, 3.0) + _blob(size, c - 6, c + 4, 1.5, 0.5)
           + _blob(size, c + 6, c - 4, 1.5, 0.5))
    # centred half a pixel off the stamp centre: the centre search finds it
    shifted = _blob(size, c + 0.5, c, 3.0) + _blob(size, c + 0.5 - 5, c + 5, 1.5, 0.5) \
        + _blob(size, c + 0.5 + 5, c - 5, 1.5, 0.5)
    lopsided = _blob(size, c, c, 3.0) + _blob(size, c - 6, c + 4, 1.5, 0.8)
    x = np.stack([np.repeat(im[None], 3, 0) for im in (sym, shifted, lopsided)])
    feats = compute_features(x.astype(np.float32), SPEC)
    asym = feats[:, names.index("asym_det")]
    assert asym[0] < 1e-6 and asym[1] < 1e-6
    assert feats[1, names.index("ashift_det")] == pytest.approx(0.5)
    assert asym[2] > 0.1


def test_gini_uniform_is_zero_and_one_bright_pixel_is_one():
    mask = np.ones((2, 100), bool)
    values = np.stack([np.full(100, 3.0), np.r_[np.zeros(99), 5.0]])
    assert gini(values, mask) == pytest.approx([0.0, 1.0], abs=1e-12)
    # masked pixels are left out; fewer than 2 pixels is undefined
    assert gini(np.r_[1.0, 1.0, 50.0][None], np.array([[True, True, False]]))[0] == 0.0
    assert np.isnan(gini(np.ones((1, 3)), np.array([[True, False, False]]))[0])


def test_gini_of_a_uniform_disc_through_the_features_is_zero():
    size = 48
    ry, rx = np.mgrid[:size, :size] - (size - 1) / 2
    disc = (np.hypot(ry, rx) < 8).astype(np.float32) * 2.0
    feats = compute_features(np.repeat(disc[None, None], 3, 1), SPEC)
    assert feats[0, feature_names(SPEC).index("gini_det")] == pytest.approx(0.0, abs=1e-6)


def test_hog_pooling_is_invariant_under_the_d4_group():
    rng = np.random.default_rng(3)
    img = rng.normal(size=(4, 32, 32)) + _blob(32, 12.0, 19.0, 2.0, 5.0)
    ref_radial, ref_sorted = hog_pooled(img, 13.0, 6)
    assert ref_radial.shape == (4, 3, 6) and ref_sorted.shape == (4, 6)
    for g_img in d4(img):
        radial, pooled = hog_pooled(g_img, 13.0, 6)
        np.testing.assert_allclose(radial, ref_radial, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(pooled, ref_sorted, rtol=1e-9, atol=1e-12)
    # not trivially constant: a different image gives different histograms
    assert not np.allclose(hog_pooled(img[::-1].copy(), 13.0, 6)[0], ref_radial)


def test_every_feature_is_d4_invariant():
    rng = np.random.default_rng(5)
    x = (rng.normal(0, 0.3, (4, 3, 48, 48)) + _blob(48, 20.0, 27.0, 3.0, 4.0)
         + _blob(48, 30.0, 17.0, 2.0, 2.0)).astype(np.float32)
    ref = compute_features(x, SPEC)
    for gx in d4(x):
        np.testing.assert_allclose(compute_features(gx, SPEC), ref, rtol=2e-4, atol=2e-5)


def test_masked_pixels_are_left_out():
    rng = np.random.default_rng(1)
    x = (rng.normal(0, 0.3, (2, 3, 48, 48)) + _blob(48, 23.5, 23.5, 3.0, 4.0)).astype(np.float32)
    masked = x.copy()
    masked[1, 0, :10, :] = np.nan
    feats, ref = compute_features(masked, SPEC), compute_features(x, SPEC)
    names = feature_names(SPEC)
    np.testing.assert_array_equal(feats[0], ref[0])
    assert feats[1, names.index("masked")] == pytest.approx(10 * 48 / (3 * 48 * 48))
    assert np.isfinite(feats[1, names.index("conc_g")])
    assert np.isfinite(feats[1]).mean() > 0.95
