"""The one D4 definition: the invariant model's orbit keeps its order (bit-identical pooling)."""

from __future__ import annotations

import torch

from skysift.learn.symmetry import d4_orbit


def test_orbit_is_the_rotations_then_the_rotations_of_the_flipped_image():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    flipped = torch.flip(x, dims=(-1,))
    expected = torch.cat([torch.rot90(im, k, dims=(-2, -1)) for im in (x, flipped)
                          for k in range(4)], dim=0)
    assert torch.equal(d4_orbit(x), expected)
