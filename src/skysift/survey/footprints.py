"""Tile footprints on the sky and the assignment of catalog objects to tiles.

Pure functions over WCS objects and coordinate arrays: an object inside several
(overlapping) tiles goes to the tile where it lies farthest from an edge; objects on no
tile get a reason (the survey index, :mod:`skysift.survey.index`, writes them as rejects).
Any celestial WCS astropy reads works, across RA = 0/360.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from scipy.spatial import cKDTree

log = logging.getLogger(__name__)

#: Rejection reasons (rejects.ecsv, results/rejects.ecsv).
REASON_NONFINITE = "non-finite coordinates"
REASON_DEC = "dec outside [-90, 90]"
REASON_OFF = "off every tile"
#: Prefix of the reason of an object on a tile missing some band files, e.g. ``missing_band:r``.
REASON_MISSING_BAND = "missing_band:"


# --------------------------------------------------------------------------- assignment

def normalise_ra(ra_deg: np.ndarray) -> np.ndarray:
    """RA wrapped into [0, 360) degrees (NaN stays NaN)."""
    ra = np.mod(np.asarray(ra_deg, dtype=np.float64), 360.0)
    ra[ra >= 360.0] = 0.0  # mod of a tiny negative number rounds to 360
    return ra


def _unit(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def celestial_frame(wcs: WCS):
    """The WCS's celestial frame; ICRS when astropy does not know it (the catalog's
    coordinates are ICRS, the best guess)."""
    try:
        return wcs_to_celestial_frame(wcs)
    except ValueError:  # unknown frame: the catalog's ICRS is the best guess
        return ICRS()


def _tile_cap(wcs: WCS, shape: tuple[int, int]) -> tuple[np.ndarray, float] | None:
    """(centre unit vector, chord radius) of a cap containing the tile in its WCS frame."""
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 17)
    x = np.concatenate([t * nx, t * nx, np.zeros_like(t), np.full_like(t, nx), [nx / 2]]) - 0.5
    y = np.concatenate([np.zeros_like(t), np.full_like(t, ny), t * ny, t * ny, [ny / 2]]) - 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(x, y)
    lon, lat = world[wcs.wcs.lng], world[wcs.wcs.lat]
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None  # e.g. an all-sky projection with off-sky corners: no prefilter
    vec = _unit(lon, lat)
    angle = np.arccos(np.clip(vec[:-1] @ vec[-1], -1.0, 1.0)).max()
    angle = min(math.pi, angle * 1.05 + 1e-6)
    return vec[-1], 2.0 * math.sin(angle / 2.0)


def _coords(ra_deg: np.ndarray, dec_deg: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RA (n,) wrapped into [0, 360) (wraps logged), dec (n,), masks (n,) finite and valid."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    finite = np.isfinite(ra) & np.isfinite(dec)
    valid = finite & (np.abs(np.where(finite, dec, 0.0)) <= 90.0)
    n_wrapped = int(np.count_nonzero(finite & ((ra < 0) | (ra >= 360))))
    if n_wrapped:
        log.info("%d objects with RA outside [0, 360) wrapped into it", n_wrapped)
    return normalise_ra(ra), dec, finite, valid


def _frame_points(frame, ra: np.ndarray, dec: np.ndarray, valid_rows: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, cKDTree | None]:
    """Lon, lat (v,) of the valid objects in ``frame``; k-d tree of their unit vectors."""
    if isinstance(frame, ICRS):
        lon, lat = ra[valid_rows], dec[valid_rows]
    else:
        sph = SkyCoord(ra[valid_rows] * u.deg, dec[valid_rows] * u.deg,
                       frame="icrs").transform_to(frame).spherical
        lon, lat = sph.lon.deg, sph.lat.deg
    return lon, lat, cKDTree(_unit(lon, lat)) if len(lon) else None


def _on_tile(wcs: WCS, shape: tuple[int, int], lon: np.ndarray, lat: np.ndarray,
             best: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel x, y (c,) on one tile, edge distance, and whether inside and farther than best."""
    ny, nx = shape
    world = [None, None]
    world[wcs.wcs.lng], world[wcs.wcs.lat] = lon, lat
    x, y = wcs.all_world2pix(world[0], world[1], 0, quiet=True)
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        dist = np.minimum(np.minimum(x + 0.5, nx - 0.5 - x), np.minimum(y + 0.5, ny - 0.5 - y))
        win = inside & (dist > best)
    return x, y, dist, win


def _reasons(finite: np.ndarray, valid: np.ndarray, tile_idx: np.ndarray) -> np.ndarray:
    """Rejection reason (n,) of every object, empty where it was assigned a tile."""
    reason = np.full(tile_idx.size, "", dtype="<U32")
    reason[valid & (tile_idx < 0)] = REASON_OFF
    reason[finite & ~valid] = REASON_DEC
    reason[~finite] = REASON_NONFINITE
    return reason


def assign_objects(ra_deg: np.ndarray, dec_deg: np.ndarray,
                   footprints: Sequence[tuple[WCS, tuple[int, int]]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Assign each object to the tile where it lies farthest from an edge.

    Parameters
    ----------
    ra_deg, dec_deg : (n,) float, ICRS degrees; RA outside [0, 360) is wrapped.
    footprints : per tile ``(celestial wcs, (ny, nx))``; any WCS astropy reads (rotated CD,
        SIP and other distortions, any celestial frame or axis order).

    Returns
    -------
    tile_idx : (n,) int64, index into ``footprints``, -1 when rejected.
    x_pix, y_pix : (n,) float64, 0-based pixel position in that tile (NaN when rejected).
    reason : (n,) str, empty when assigned, else the rejection reason.

    A pixel ``(x, y)`` is inside when ``-0.5 <= x < nx - 0.5`` (same for y); the edge
    distance is ``min(x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y)``; ties go to the first
    tile. Candidates are prefiltered with a k-d tree on unit vectors (no RA seam).
    """
    ra, dec, finite, valid = _coords(ra_deg, dec_deg)
    n = ra.size
    tile_idx = np.full(n, -1, np.int64)
    x_pix, y_pix = np.full(n, np.nan), np.full(n, np.nan)
    best = np.full(n, -np.inf)
    valid_rows = np.flatnonzero(valid)
    frames: dict[str, tuple] = {}
    for t, (wcs, (ny, nx)) in enumerate(footprints):
        frame = celestial_frame(wcs)
        key = repr(frame)
        if key not in frames:
            frames[key] = _frame_points(frame, ra, dec, valid_rows)
        lon, lat, tree = frames[key]
        if tree is None:
            break
        cap = _tile_cap(wcs, (ny, nx))
        cand = (np.sort(np.asarray(tree.query_ball_point(cap[0], cap[1]), dtype=np.int64))
                if cap else np.arange(len(lon)))
        if not len(cand):
            continue
        rows = valid_rows[cand]
        x, y, dist, win = _on_tile(wcs, (ny, nx), lon[cand], lat[cand], best[rows])
        rows = rows[win]
        tile_idx[rows], x_pix[rows], y_pix[rows], best[rows] = t, x[win], y[win], dist[win]
    reason = _reasons(finite, valid, tile_idx)
    return tile_idx, x_pix, y_pix, reason


def missing_band_reasons(ra_deg: np.ndarray, dec_deg: np.ndarray, reason: np.ndarray,
                         footprints: Sequence[tuple[WCS, tuple[int, int]]],
                         missing: Sequence[Sequence[str]]) -> np.ndarray:
    """Reasons (n,) with ``missing_band:<bands>`` for the objects off every complete tile
    (``reason`` :data:`REASON_OFF`) that lie on a tile missing some band files.

    ``footprints`` and ``missing`` (its absent bands, e.g. ``["r"]``) describe those
    incomplete tiles; an object on several goes to the one farthest from an edge, like
    :func:`assign_objects`. Returns a new array; objects on complete tiles keep their tile.
    """
    out = np.asarray(reason).astype(object)
    off = np.flatnonzero(out == REASON_OFF)
    if not len(footprints) or not off.size:
        return out.astype(str)
    got, _, _, _ = assign_objects(np.asarray(ra_deg)[off], np.asarray(dec_deg)[off], footprints)
    labels = np.array([REASON_MISSING_BAND + ",".join(m) for m in missing], dtype=object)
    out[off[got >= 0]] = labels[got[got >= 0]]
    return out.astype(str)


def assign_to_complete(ra_deg: np.ndarray, dec_deg: np.ndarray,
                       footprints: Sequence[tuple[WCS, tuple[int, int]]],
                       missing: Sequence[Sequence[str]]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`assign_objects` over the tiles that have every band (``missing[t]`` empty);
    objects only on tiles missing bands get :func:`missing_band_reasons`. ``tile_idx``
    indexes ``footprints``."""
    full = np.array([t for t, m in enumerate(missing) if not m], np.int64)
    tile_idx, x_pix, y_pix, reason = assign_objects(ra_deg, dec_deg,
                                                    [footprints[t] for t in full])
    partial = [t for t, m in enumerate(missing) if m]
    reason = missing_band_reasons(ra_deg, dec_deg, reason, [footprints[t] for t in partial],
                                  [missing[t] for t in partial])
    tile_idx = np.where(tile_idx >= 0, full[np.maximum(tile_idx, 0)] if full.size else -1, -1)
    return tile_idx, x_pix, y_pix, reason


def footprint_radec(wcs: WCS, shape: tuple[int, int]) -> list[list[float]]:
    """ICRS (ra, dec) degrees of the tile's four outer pixel corners, in pixel order."""
    ny, nx = shape
    x, y = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]), np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(x, y)
        sky = SkyCoord(world[wcs.wcs.lng] * u.deg, world[wcs.wcs.lat] * u.deg,
                       frame=celestial_frame(wcs)).icrs
    return [[float(r), float(d)] for r, d in zip(sky.ra.deg, sky.dec.deg, strict=True)]


# --------------------------------------------------------------------------- headers
