"""The one cutter: square multi-band stamps at pixel positions, with their quality flags.

Pure functions over a tile's (band, y, x) pixels; the cutouts step (:mod:`skysift.stamps.cutouts`)
reads tiles and writes files around them. Stamp geometry: README, Conventions."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from skysift.seeds import derive_seed
from skysift.stamps.flags import CENTRE, EDGE, EMPTY, MASKED, NAN

#: Objects cut before their pixels are tested for NaN (a block stays in the CPU cache).
_BLOCK = 16


def stamp_origin(pos_xy: np.ndarray, size_pix: int) -> np.ndarray:
    """Lower-left pixel ``round(pos) - size_pix // 2`` of each stamp, (n, 2) int64 (x, y).

    Rounding is half-up (``floor(pos + 0.5)``); non-finite positions give a huge negative
    origin so the stamp lies wholly outside any image.
    """
    pos = np.asarray(pos_xy, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(pos)
    # clipping keeps int64 safe; any stamp this far out is all outside the image anyway
    pos = np.clip(np.where(finite, pos, -1e12), -1e12, 1e12)
    return np.floor(pos + 0.5).astype(np.int64) - size_pix // 2


def _pixel_flags(stamp: np.ndarray, x0: int, y0: int, shape: tuple[int, int],
                 masked: np.ndarray | None) -> int:
    """EDGE/MASKED/NAN/EMPTY of one stamp (band, s, s) whose origin is (x0, y0)."""
    ny, nx = shape
    s = stamp.shape[-1]
    ya, yb, xa, xb = max(y0, 0), min(y0 + s, ny), max(x0, 0), min(x0 + s, nx)
    flag = EDGE if (ya, yb, xa, xb) != (y0, y0 + s, x0, x0 + s) else 0
    if ya >= yb or xa >= xb:
        return flag | EMPTY
    bad = ~np.isfinite(stamp[:, ya - y0:yb - y0, xa - x0:xb - x0])
    if masked is not None:
        rejected = masked[:, ya:yb, xa:xb]
        flag |= MASKED if rejected.any() else 0
        flag |= NAN if (bad & ~rejected).any() else 0
    elif bad.any():
        flag |= NAN
    if bad.reshape(len(bad), -1).all(axis=1).any():
        flag |= EMPTY
    return flag


def extract(images: np.ndarray, pos_xy: np.ndarray, size_pix: int,
            masked: np.ndarray | None = None, out: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``size_pix`` x ``size_pix`` stamps of every band around pixel positions.

    Parameters
    ----------
    images : (band, y, x) float, tile pixels; NaN where invalid (the pixels ``masked``
        marks must already be NaN, as :func:`skysift.survey.tiles.read_tile` leaves them).
        float32 native C-contiguous input is used as is, anything else is converted once.
    pos_xy : (n, 2) float, 0-based pixel coordinates (x, y) of the objects.
    size_pix : side of a stamp, pixels (odd or even).
    masked : optional (band, y, x) bool, True where the survey mask rejected the pixel; it
        only tells MASKED from NAN in the flags.
    out : optional (n, band, size_pix, size_pix) float32 buffer to fill.

    Returns
    -------
    stamps : (n, band, size_pix, size_pix) float32, NaN outside the image and where the
        image is NaN.
    flags : (n,) uint8, bits of ``FLAG_BITS``: EDGE (stamp leaves the image), MASKED,
        NAN (non-finite image pixels in the stamp), CENTRE (the object's pixel is invalid in
        some band), EMPTY (a band without any valid pixel).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (band, y, x), got shape {images.shape}")
    if images.dtype != np.float32 or not images.flags.c_contiguous:
        images = np.ascontiguousarray(images, dtype=np.float32)
    s = int(size_pix)
    if s < 1:
        raise ValueError(f"size_pix must be positive, got {size_pix}")
    n_band, ny, nx = images.shape
    origin = stamp_origin(pos_xy, s)
    n = len(origin)
    stamps = np.empty((n, n_band, s, s), np.float32) if out is None else out
    if stamps.shape != (n, n_band, s, s) or stamps.dtype != np.float32:
        raise ValueError(f"out must be float32 {(n, n_band, s, s)}, got {stamps.shape}")
    ox, oy = origin[:, 0].tolist(), origin[:, 1].tolist()
    flags = np.zeros(n, np.uint8)
    finite = np.empty(n, bool)
    for lo in range(0, n, _BLOCK):
        hi = min(n, lo + _BLOCK)
        for k in range(lo, hi):
            x, y = ox[k], oy[k]
            if x >= 0 and y >= 0 and x + s <= nx and y + s <= ny:
                stamps[k] = images[:, y:y + s, x:x + s]
            else:
                stamps[k] = np.nan
                ya, yb, xa, xb = max(y, 0), min(y + s, ny), max(x, 0), min(x + s, nx)
                if ya < yb and xa < xb:
                    stamps[k, :, ya - y:yb - y, xa - x:xb - x] = images[:, ya:yb, xa:xb]
        # NaN/inf propagate into the sum: a cheap test of every pixel, while still in cache
        with np.errstate(over="ignore", invalid="ignore"):
            finite[lo:hi] = np.isfinite(stamps[lo:hi].sum(axis=(2, 3))).all(axis=1)
    for k in np.flatnonzero(~finite).tolist():
        flags[k] = _pixel_flags(stamps[k], ox[k], oy[k], (ny, nx), masked)
    c = s // 2
    flags[~np.isfinite(stamps[:, :, c, c]).all(axis=1)] |= CENTRE
    return stamps, flags


def band_has_valid(band: np.ndarray, rows_per_block: int = 256) -> bool:
    """True when the (y, x) image holds a finite pixel (stops at the first block with one)."""
    return any(np.isfinite(band[y:y + rows_per_block]).any()
               for y in range(0, band.shape[0], rows_per_block))


def blank_seed(seed: int, tile: str) -> int:
    """63-bit seed of a tile's blank-sky positions, from the master seed and the tile name."""
    return derive_seed(seed, "cutouts", "blank", tile)


def blank_positions(shape: tuple[int, int], objects_xy: np.ndarray, size_pix: int,
                    min_distance_pix: float, n: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """Up to ``n`` random stamp centres on blank sky: whole stamps inside, far from objects.

    Parameters
    ----------
    shape : (ny, nx) of the tile.
    objects_xy : (m, 2) 0-based pixel positions (x, y) of every catalogued object near
        the tile (NaN rows are ignored).
    size_pix : stamp side; a centre's stamp (:func:`stamp_origin`) must lie inside the tile.
    min_distance_pix : smallest distance from a centre to any object, pixels.
    n : wanted positions; ``rng`` draws candidates uniformly, ``50 n`` at most.

    Returns
    -------
    (k, 2) float64 integer-valued pixel centres (x, y), k <= n (fewer on a crowded tile).
    """
    ny, nx = shape
    half = size_pix // 2
    lo, hi_x, hi_y = half, nx - size_pix + half, ny - size_pix + half
    if n <= 0 or hi_x < lo or hi_y < lo:
        return np.zeros((0, 2))
    cand = np.column_stack([rng.integers(lo, hi_x + 1, 50 * n),
                            rng.integers(lo, hi_y + 1, 50 * n)]).astype(np.float64)
    obj = np.asarray(objects_xy, dtype=np.float64).reshape(-1, 2)
    obj = obj[np.isfinite(obj).all(axis=1)]
    if len(obj):
        tree = cKDTree(obj)
        dist, _ = tree.query(cand, k=1)
        cand = cand[dist >= min_distance_pix]
    return cand[:n]


def tile_runs(rows: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Tiles (t,) in the order of ``rows``, and the start (t + 1,) of each tile's run of rows."""
    tiles, starts = np.unique(rows["tile"], return_index=True)
    order = np.argsort(starts)
    return tiles[order].tolist(), np.append(starts[order], len(rows["tile"]))
