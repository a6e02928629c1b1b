"""The lens residual: a blue band minus the scaled red band, so the deflector vanishes and
blue arcs remain (one function, shared by the classical features and the review gallery).

A strong-lens deflector is a red early-type galaxy; the lensed source is a blue star-forming
galaxy. With the deflector's light in the blue band ≈ α × its light in the red band (one
profile, one colour), ``blue - α red`` with α fitted on the stamp's core removes the
deflector and keeps what is bluer than it: the arcs (the g − αi residual of survey lens
searches). Pure numpy over (n, band, s, s) stamps; NaN (masked) pixels count as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Preferred (blue, red) band names, in order; else the first and the last band.
BLUE, RED = ("g", "u", "r"), ("i", "z", "r", "y")
#: Azimuthal sectors of the arc coverage.
N_SECTORS = 16


def residual_bands(bands: Sequence[str]) -> tuple[int, int] | None:
    """Indices (blue, red) of the residual's bands; None with a single band."""
    if len(bands) < 2:
        return None
    names = [b.lower() for b in bands]
    blue = next((names.index(b) for b in BLUE if b in names), 0)
    red = next((names.index(b) for b in RED if b in names and names.index(b) != blue),
               len(bands) - 1)
    return blue, red


def lens_residual(images: np.ndarray, blue: int, red: int, core_pix: float) -> np.ndarray:
    """``blue - α red`` of each stamp, α ≥ 0 least-squares on the core (r < ``core_pix``).

    images : (n, band, s, s); returns (n, s, s) float64.
    """
    x = np.nan_to_num(np.asarray(images, dtype=np.float64))
    b, r = x[:, blue], x[:, red]
    s = x.shape[-1]
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
    core = np.hypot(yy, xx) < core_pix
    num = (b[:, core] * r[:, core]).sum(axis=1)
    den = (r[:, core] ** 2).sum(axis=1)
    alpha = np.where(den > 0, np.maximum(num, 0) / np.maximum(den, 1e-12), 0.0)
    return b - alpha[:, None, None] * r


def residual_feature_names(n_annuli: int) -> list[str]:
    """Names of :func:`residual_features`' columns."""
    return ([f"bres{k}" for k in range(n_annuli)]
            + ["bres_peak", "bres_cover", "bres_tangential"])


def residual_features(images: np.ndarray, bands: Sequence[str], radii_pix: np.ndarray,
                      core_pix: float, border_pix: int) -> np.ndarray:
    """Arc statistics of the lens residual, (n, n_annuli + 3) float64 (NaN with one band).

    ``bres{k}``: S/N of the positive residual in annulus k (edges ``radii_pix``: the first is
    a disc); ``bres_peak``: the largest; ``bres_cover``: fraction of :data:`N_SECTORS`
    sectors outside the core whose mean residual is above 2 sigma; ``bres_tangential``:
    log of the tangential over the radial second moment of the residual above 2 sigma (> 0
    for arcs around the centre, :func:`_tangential`). Sigma is the robust noise of the
    residual's border.
    """
    n, s, nk = len(images), images.shape[-1], len(radii_pix)
    pair = residual_bands(bands)
    if pair is None:
        return np.full((n, nk + 3), np.nan)
    res = lens_residual(images, *pair, core_pix)
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2
    r, phi = np.hypot(yy, xx), np.arctan2(yy, xx)
    edge = np.minimum(np.minimum(yy, xx) + (s - 1) / 2, (s - 1) / 2 - np.maximum(yy, xx))
    border = res[:, edge < border_pix]
    med = np.median(border, axis=1)
    sigma = np.maximum(1.4826 * np.median(np.abs(border - med[:, None]), axis=1), 1e-6)
    z = (res - med[:, None, None]) / sigma[:, None, None]
    ann = np.digitize(r, np.r_[0.0, radii_pix]) - 1
    snr = np.stack([np.maximum(z[:, ann == k], 0).sum(axis=1)
                    / np.sqrt(max(int((ann == k).sum()), 1)) for k in range(nk)], axis=1)
    ring = (r >= core_pix) & (r < radii_pix[-1])
    # sector edges at odd multiples of pi / N_SECTORS: no pixel of the square grid lies on
    # one, and the D4 rotations and flips map edges onto edges (invariant coverage)
    sector = np.floor((phi + np.pi) / (2 * np.pi) * N_SECTORS + 0.5).astype(int) % N_SECTORS
    cover = np.stack([z[:, ring & (sector == k)].mean(axis=1) * np.sqrt(
        max((ring & (sector == k)).sum(), 1)) > 2.0 for k in range(N_SECTORS)], axis=1)
    w = np.where(ring & (z > 2.0), z, 0.0)
    return np.column_stack([snr, snr.max(axis=1), cover.mean(axis=1), _tangential(w, r, phi)])


def _tangential(w: np.ndarray, r: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """log of the tangential over the radial variance of weights w (n, s, s) about their
    mean radius and direction (pixels², each + 0.25); NaN where all weights are 0."""
    total = w.sum(axis=(1, 2))
    safe = np.maximum(total, 1e-12)
    rbar = (w * r).sum(axis=(1, 2)) / safe
    mean_dir = np.arctan2((w * np.sin(phi)).sum(axis=(1, 2)), (w * np.cos(phi)).sum(axis=(1, 2)))
    dphi = np.angle(np.exp(1j * (phi[None] - mean_dir[:, None, None])))
    radial = (w * (r[None] - rbar[:, None, None]) ** 2).sum(axis=(1, 2)) / safe
    tangential = (w * (rbar[:, None, None] * dphi) ** 2).sum(axis=(1, 2)) / safe
    return np.where(total > 0, np.log((tangential + 0.25) / (radial + 0.25)), np.nan)
