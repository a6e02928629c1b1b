"""skysift.stamps.display: a training example is shown at the review page's stretch."""

import numpy as np

from skysift.stamps.display import AUTO_STRETCH_SIGMA, composite, normalised_composite, rgb_bands


def test_normalised_stamps_are_shown_at_the_review_pages_auto_stretch():
    """Undo the preprocess arcsinh, then the review's composite at 10 x the noise: the same
    pixels as a raw stamp in noise units shown by the review page."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 3, 16, 16))  # noise units (preprocess scale: border MAD)
    x[:, :, 6:10, 6:10] += np.array([5.0, 20.0, 60.0])[None, :, None, None]
    norm = {"stretch": "arcsinh", "arcsinh_softening": 3.0}
    got = normalised_composite(np.arcsinh(x / 3.0), ["g", "r", "i"], norm, q=8.0)
    want = composite(x, rgb_bands(["g", "r", "i"]), AUTO_STRETCH_SIGMA, 8.0)
    assert got.shape == (2, 16, 16, 3) and np.array_equal(got, want)
    assert got[0, 8, 8, 0] > got[0, 8, 8, 2]  # i (red) brighter than g (blue) here
    linear = normalised_composite(x, ["g", "r", "i"], {"stretch": "linear"}, q=8.0)
    assert np.array_equal(linear, want)
