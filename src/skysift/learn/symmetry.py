"""The symmetries of the sky as a group: D4, the 8 rotations by 90° and flips of a stamp.

One definition shared by augmentation (:mod:`skysift.learn.augment`), test-time
augmentation (:mod:`skysift.score.infer`) and the exactly invariant network
(:mod:`skysift.learn.models.d4`). Every element is an exact pixel permutation.
"""

from __future__ import annotations

import torch

#: Elements of the dihedral group D4: k = rotation by 90° × (k % 4), then a flip if k >= 4.
D4_ELEMENTS = range(8)
#: Number of elements of D4.
ORDER = 8
#: Elements in the order of :func:`d4_orbit`: the 4 rotations, then the flipped image
#: rotated by 0, 90, 180, 270 degrees (rot90(flip(x), k) is element 4 + (-k) % 4).
ORBIT = (0, 1, 2, 3, 4, 7, 6, 5)


def _check_element(k: int) -> int:
    if int(k) not in D4_ELEMENTS:
        raise ValueError(f"D4 element must be an integer in 0..7, got {k}")
    return int(k)


def d4_apply(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply D4 element ``k`` to the last two (y, x) axes of ``x``: an exact pixel permutation.

    ``k % 4`` quarter turns (``torch.rot90`` on dims (-2, -1)), then for ``k >= 4`` a flip
    of the last axis. Odd ``k % 4`` needs square images.
    """
    k = _check_element(k)
    out = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def d4_compose(a: int, b: int) -> int:
    """The element equal to applying ``b`` first, then ``a``.

    With R a quarter turn and F the flip, element k is F^(k//4) R^(k%4); F R F = R^-1 gives
    ``d4_apply(d4_apply(x, b), a) == d4_apply(x, d4_compose(a, b))``.
    """
    a, b = _check_element(a), _check_element(b)
    ra, fa, rb, fb = a % 4, a // 4, b % 4, b // 4
    if fb == 0:
        return 4 * fa + (ra + rb) % 4
    return 4 * (1 - fa) + (rb - ra) % 4


def d4_inverse(k: int) -> int:
    """The element undoing ``k``: rotations invert, reflections are their own inverse."""
    k = _check_element(k)
    return (4 - k) % 4 if k < 4 else k


def d4_random(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply an independent uniformly random D4 element to each sample.

    Parameters
    ----------
    x : (n, ..., s, s) tensor.
    generator : torch.Generator on ``x.device``.

    Returns
    -------
    (n, ..., s, s) transformed tensor and the (n,) int64 elements drawn.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"D4 needs square images, got {tuple(x.shape[-2:])}")
    ks = torch.randint(0, len(D4_ELEMENTS), (x.shape[0],), generator=generator, device=x.device)
    out = torch.empty_like(x)
    for k in D4_ELEMENTS:  # one batched call per element, not per sample
        sel = (ks == k).nonzero(as_tuple=True)[0]
        if sel.numel():
            out[sel] = d4_apply(x[sel], k)
    return out, ks


def d4_orbit(x: torch.Tensor) -> torch.Tensor:
    """The 8 images ``g x`` for every g in D4, stacked along the batch axis.

    x : (n, c, s, s). Returns (8 n, c, s, s): rotations by 0, 90, 180, 270 degrees, then
    the same of the image flipped left-right, each block of n in the input order
    (:data:`ORBIT`).
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"the d4 model needs square stamps, got {tuple(x.shape[-2:])}")
    return torch.cat([d4_apply(x, k) for k in ORBIT], dim=0)
