"""The one normaliser of stamps: each band scaled by robust statistics of the stamp's border.

Pure functions over (n, band, y, x) arrays, shared by the preprocess step, the training-set
simulator (hosts and simulated examples) and the scoring path, so a stamp is normalised the
same wherever it is made (docs/formats.md: preprocess.normalisation)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from skysift.errors import DataError

#: MAD of a Gaussian times this is its sigma.
MAD_TO_SIGMA = 1.4826


#: Columns of the per-stamp statistics: background, scale, scale fell back to 1, empty border.
_N_STATS = 4


def border_width(size_pix: int) -> int:
    """Width in pixels of the border frame used for background and noise.

    A 4-pixel frame, narrowed to ``size_pix // 8`` (but at least 2) for small stamps so
    the frame never covers the object.
    """
    return max(2, min(4, size_pix // 8))


def check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise DataError(f"images must have shape (n, band, s, s), got {images.shape}")
    return images.astype(np.float32, copy=False)


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring non-finite values (NaN where none); float64.

    Equivalent to ``np.nanmedian`` but vectorised: one sort instead of a Python loop
    over rows.
    """
    finite = np.isfinite(a)
    srt = np.sort(np.where(finite, a, np.nan), axis=-1)  # NaN sorts last
    k = finite.sum(axis=-1)
    lo = np.take_along_axis(srt, (np.maximum(k - 1, 0) // 2)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(srt, np.minimum(k // 2, a.shape[-1] - 1)[..., None], axis=-1)[..., 0]
    med = 0.5 * (lo.astype(np.float64) + hi.astype(np.float64))
    return np.where(k > 0, med, np.nan)


def border_stats(images: np.ndarray, cfg: Mapping) -> np.ndarray:
    """Per-stamp, per-band background and noise scale from the border frame.

    Parameters
    ----------
    images : (n, band, s, s) float32, NaN where invalid.
    cfg : the ``preprocess`` config block.

    Returns
    -------
    (n, band, 4) float64: background (subtracted; 0 when ``background: none`` or the border
    has no finite pixel), scale (divided by: 1.4826 × MAD of the border, 1 when
    ``scale: none``), 1.0 where the scale fell back to 1 because the MAD was zero or
    undefined, 1.0 where the border had no finite pixel.
    """
    images = check_images(images)
    n, n_band, s, _ = images.shape
    width = border_width(s)
    frame = np.ones((s, s), dtype=bool)
    frame[width:s - width, width:s - width] = False
    border = images[:, :, frame]  # (n, band, m)
    median = _nanmedian(border)
    empty = ~np.isfinite(median)
    stats = np.zeros((n, n_band, _N_STATS), dtype=np.float64)
    stats[..., 3] = empty
    if cfg["background"] == "border_median":
        stats[..., 0] = np.where(empty, 0.0, median)
    stats[..., 1] = 1.0
    if cfg["scale"] == "border_mad":
        sigma = MAD_TO_SIGMA * _nanmedian(np.abs(border - median[..., None]))
        fallback = ~(np.isfinite(sigma) & (sigma > 0))
        stats[..., 1] = np.where(fallback, 1.0, sigma)
        stats[..., 2] = fallback
    return stats


def scaled(images: np.ndarray, stats: np.ndarray, cfg: Mapping) -> np.ndarray:
    """Apply ``stats`` (from :func:`border_stats`) and the stretch; NaN -> 0; float32."""
    background = stats[..., 0].astype(np.float32)[..., None, None]
    scale = stats[..., 1].astype(np.float32)[..., None, None]
    x = (images - background) / scale
    if cfg["stretch"] == "arcsinh":
        x = np.arcsinh(x / np.float32(cfg["arcsinh_softening"]))
    return np.where(np.isfinite(images), x, np.float32(0)).astype(np.float32, copy=False)


def valid_mask(images: np.ndarray) -> np.ndarray:
    return np.isfinite(images).astype(np.uint8)


def normalise(images: np.ndarray, cfg: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Normalise raw stamps.

    Per stamp and band: subtract the border median (``background: border_median``), divide
    by 1.4826 × the border MAD (``scale: border_mad``; 1 when that is zero or undefined),
    then ``arcsinh(x / arcsinh_softening)`` (``stretch: arcsinh``) or nothing (``linear``).
    The border is the outer :func:`border_width` pixel frame.

    Parameters
    ----------
    images : (n, band, s, s) float32, raw pixels in tile units, NaN where invalid.
    cfg : the ``preprocess`` config block.

    Returns
    -------
    out : (n, band, s, s) float32, normalised, 0 where the input was not finite.
    mask : (n, band, s, s) uint8, 1 where the input pixel was finite.
    """
    images = check_images(images)
    return scaled(images, border_stats(images, cfg), cfg), valid_mask(images)
