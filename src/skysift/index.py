"""The survey index: tile footprints, object -> tile assignment, rejects, and shards.

It decides, once for the whole survey, which tile cuts which catalog object: an object
inside several (overlapping) tiles goes to the tile where it lies farthest from an edge;
objects on no tile go to a rejects table with the reason. Tiles with objects are grouped
into shards of ``index.tiles_per_shard`` tiles, the unit of work of every per-object step.
Layouts of ``tiles.json``, ``assignment.fits``, ``rejects.ecsv`` and ``shards.json`` are in
docs/formats.md.

    python -m skysift.index --config-json J --out-dir results/index [--strict]
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from scipy.spatial import cKDTree

from skysift import cli
from skysift.catalog import read_catalog
from skysift.errors import DataError, SurveyError
from skysift.io import atomic_output, id_array, provenance, write_json
from skysift.survey import TileHeader, discover_tiles, read_tile_header

log = logging.getLogger(__name__)

#: Rejection reasons (rejects.ecsv, results/rejects.ecsv).
REASON_NONFINITE = "non-finite coordinates"
REASON_DEC = "dec outside [-90, 90]"
REASON_OFF = "off every tile"
ASSIGNMENT_COLUMNS = ("index", "id", "ra", "dec", "tile", "x_pix", "y_pix")


# --------------------------------------------------------------------------- assignment

def normalise_ra(ra_deg: np.ndarray) -> np.ndarray:
    """RA wrapped into [0, 360) degrees (NaN stays NaN)."""
    ra = np.mod(np.asarray(ra_deg, dtype=np.float64), 360.0)
    ra[ra >= 360.0] = 0.0  # mod of a tiny negative number rounds to 360
    return ra


def _unit(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def _frame(wcs: WCS):
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
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    n = ra.size
    finite = np.isfinite(ra) & np.isfinite(dec)
    valid = finite & (np.abs(np.where(finite, dec, 0.0)) <= 90.0)
    n_wrapped = int(np.count_nonzero(finite & ((ra < 0) | (ra >= 360))))
    if n_wrapped:
        log.info("%d objects with RA outside [0, 360) wrapped into it", n_wrapped)
    ra = normalise_ra(ra)
    tile_idx = np.full(n, -1, np.int64)
    x_pix, y_pix = np.full(n, np.nan), np.full(n, np.nan)
    best = np.full(n, -np.inf)
    valid_rows = np.flatnonzero(valid)
    frames: dict[str, tuple] = {}
    for t, (wcs, (ny, nx)) in enumerate(footprints):
        frame = _frame(wcs)
        key = repr(frame)
        if key not in frames:
            if isinstance(frame, ICRS):
                lon, lat = ra[valid_rows], dec[valid_rows]
            else:
                sph = SkyCoord(ra[valid_rows] * u.deg, dec[valid_rows] * u.deg,
                               frame="icrs").transform_to(frame).spherical
                lon, lat = sph.lon.deg, sph.lat.deg
            frames[key] = (lon, lat, cKDTree(_unit(lon, lat)) if len(lon) else None)
        lon, lat, tree = frames[key]
        if tree is None:
            break
        cap = _tile_cap(wcs, (ny, nx))
        cand = (np.sort(np.asarray(tree.query_ball_point(cap[0], cap[1]), dtype=np.int64))
                if cap else np.arange(len(lon)))
        if not len(cand):
            continue
        world = [None, None]
        world[wcs.wcs.lng], world[wcs.wcs.lat] = lon[cand], lat[cand]
        x, y = wcs.all_world2pix(world[0], world[1], 0, quiet=True)
        with np.errstate(invalid="ignore"):
            inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
            dist = np.minimum(np.minimum(x + 0.5, nx - 0.5 - x), np.minimum(y + 0.5, ny - 0.5 - y))
            rows = valid_rows[cand]
            win = inside & (dist > best[rows])
        rows = rows[win]
        tile_idx[rows], x_pix[rows], y_pix[rows], best[rows] = t, x[win], y[win], dist[win]
    reason = np.full(n, "", dtype="<U32")
    reason[valid & (tile_idx < 0)] = REASON_OFF
    reason[finite & ~valid] = REASON_DEC
    reason[~finite] = REASON_NONFINITE
    return tile_idx, x_pix, y_pix, reason


def footprint_radec(wcs: WCS, shape: tuple[int, int]) -> list[list[float]]:
    """ICRS (ra, dec) degrees of the tile's four outer pixel corners, in pixel order."""
    ny, nx = shape
    x, y = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]), np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(x, y)
        sky = SkyCoord(world[wcs.wcs.lng] * u.deg, world[wcs.wcs.lat] * u.deg,
                       frame=_frame(wcs)).icrs
    return [[float(r), float(d)] for r, d in zip(sky.ra.deg, sky.dec.deg, strict=True)]


# --------------------------------------------------------------------------- shards

def shard_name(i: int, n_shards: int) -> str:
    """Name of shard ``i`` of ``n_shards``: ``s0000``, ``s0001``, ... (zero-padded)."""
    return f"s{i:0{max(4, len(str(n_shards - 1)))}d}"


def make_shards(tiles: Sequence[str], n_objects: Sequence[int], tiles_per_shard: int
                ) -> list[dict]:
    """Group the tiles that hold objects into shards of ``tiles_per_shard`` consecutive tiles.

    Parameters
    ----------
    tiles : tile names in assignment order (sorted).
    n_objects : objects assigned to each tile; tiles with none join no shard.
    tiles_per_shard : at most this many tiles per shard.

    Returns
    -------
    One dict per shard: ``shard`` (name), ``tiles`` (list), ``n_objects`` and ``rows``
    ``[start, stop)`` of its objects in the assignment table (sorted by tile, index).
    """
    if tiles_per_shard < 1:
        raise ValueError(f"tiles_per_shard must be positive, got {tiles_per_shard}")
    starts = np.concatenate([[0], np.cumsum(n_objects)]).astype(np.int64)
    used = [i for i, n in enumerate(n_objects) if n > 0]
    groups = [used[k:k + tiles_per_shard] for k in range(0, len(used), tiles_per_shard)]
    return [{"shard": shard_name(i, len(groups)), "tiles": [tiles[t] for t in group],
             "n_objects": int(sum(n_objects[t] for t in group)),
             "rows": [int(starts[group[0]]), int(starts[group[-1] + 1])]}
            for i, group in enumerate(groups)]


def load_shards(index_dir: str | Path) -> dict:
    """``shards.json`` of an index directory, as a dict."""
    path = Path(index_dir) / "shards.json"
    if not path.exists():
        raise DataError(f"{path}: not found; run the survey index first (snakemake {path})")
    with open(path) as fh:
        return json.load(fh)


def read_assignment_rows(index_dir: str | Path, shard: str | None = None,
                         tile: str | None = None) -> dict[str, np.ndarray]:
    """Assignment columns of one shard (its row range) or one tile (a scan).

    The table is memory-mapped and only the selected rows are copied, so every job can
    read a survey-sized assignment.
    """
    path = Path(index_dir) / "assignment.fits"
    if not path.exists():
        raise DataError(f"{path}: assignment not found; run the survey index first "
                        f"(snakemake {path})")
    lo, hi, tiles = None, None, None
    if shard is not None:
        entry = {s["shard"]: s for s in load_shards(index_dir)["shards"]}.get(shard)
        if entry is None:
            raise DataError(f"{Path(index_dir) / 'shards.json'}: no shard '{shard}'; the index "
                            "changed since the job was planned: re-run snakemake")
        (lo, hi), tiles = entry["rows"], entry["tiles"]
    try:
        with fits.open(path, memmap=True) as hdul:
            data = hdul[1].data
            names = data.columns.names if data is not None else []
            missing = [c for c in ASSIGNMENT_COLUMNS if c not in names]
            if missing:
                raise DataError(f"{path}: missing columns {missing}; delete it and re-run "
                                "the survey index")
            if shard is None:
                names_all = np.char.strip(np.char.decode(np.asarray(data["tile"], "S"), "utf-8"))
                rows = np.flatnonzero(names_all == tile)
                out = {c: np.array(data[c][rows]) for c in ASSIGNMENT_COLUMNS}
            else:  # a shard's rows are one slice: only those pages are read
                out = {c: np.array(data[c][lo:hi]) for c in ASSIGNMENT_COLUMNS}
    except DataError:
        raise
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise DataError(f"{path}: cannot read the assignment ({exc}); delete it and re-run "
                        "the survey index") from None
    out["tile"] = np.char.strip(np.char.decode(np.asarray(out["tile"], "S"), "utf-8"))
    if tiles is not None and not set(out["tile"].tolist()) <= set(tiles):
        raise DataError(f"{path}: rows {lo}:{hi} do not belong to shard '{shard}'; delete "
                        f"{index_dir} and re-run the survey index")
    return out


# --------------------------------------------------------------------------- the index

@dataclass
class SurveyIndex:
    """Everything the index decides; :func:`write_index` writes it."""

    headers: list[TileHeader]
    assignment: Table
    rejects: Table
    counts: np.ndarray  # objects per tile
    shards: list[dict]
    n_catalog: int


def build_index(config: dict, headers: Sequence[TileHeader] | None = None) -> SurveyIndex:
    """Read every tile header and the catalog; assign, reject and shard.

    Raises
    ------
    SurveyError
        Bad tiles or catalog (see :mod:`skysift.survey`), no tile matching the pattern, no
        object on any tile, or (``strict``) catalog rows with unusable coordinates.
    """
    survey = config["survey"]
    if headers is None:
        tiles = discover_tiles(survey["tiles"], survey["bands"])
        if not tiles:
            raise SurveyError(f"no tile files match survey.tiles '{survey['tiles']}' (bands "
                              f"{survey['bands']}); fix the pattern, or run the mock step first "
                              "when survey.kind is mock")
        headers = [read_tile_header(config, t) for t in cli.progress(tiles, desc="headers")]
    catalog = read_catalog(config)
    tile_idx, x_pix, y_pix, reason = assign_objects(
        catalog.ra_deg, catalog.dec_deg, [(h.wcs, h.shape) for h in headers])
    bad_coords = (reason != "") & (reason != REASON_OFF)
    if config.get("strict") and bad_coords.any():
        rows = np.flatnonzero(bad_coords)
        raise SurveyError(f"{catalog.path}: {rows.size} rows have unusable coordinates "
                          f"({reason[rows[0]]} in row {rows[0]}); fix them, or set strict: "
                          "false to list them in the rejects")
    index = np.arange(len(catalog.ids), dtype=np.int64)
    ok = np.flatnonzero(tile_idx >= 0)
    if not ok.size:
        raise SurveyError(f"{catalog.path}: none of its {index.size} objects lies on any of the "
                          f"{len(headers)} tiles (e.g. tile {headers[0].tile} covers "
                          f"{footprint_radec(headers[0].wcs, headers[0].shape)}); check "
                          "survey.columns.ra/dec (degrees) and survey.tiles")
    ok = ok[np.lexsort((index[ok], tile_idx[ok]))]
    names = np.array([h.tile for h in headers], dtype=str)
    # FITS strings are bytes: string ids go in as their UTF-8 encoding, verbatim
    assignment = Table({"index": index[ok], "id": id_array(catalog.ids[ok]),
                        "ra": normalise_ra(catalog.ra_deg)[ok], "dec": catalog.dec_deg[ok],
                        "tile": names[tile_idx[ok]], "x_pix": x_pix[ok], "y_pix": y_pix[ok]})
    bad = np.flatnonzero(tile_idx < 0)
    rejects = Table({"index": index[bad], "id": catalog.ids[bad],
                     "reason": reason[bad].astype(str)})
    counts = np.bincount(tile_idx[ok], minlength=len(headers))
    shards = make_shards(names.tolist(), counts.tolist(), config["index"]["tiles_per_shard"])
    return SurveyIndex(list(headers), assignment, rejects, counts, shards, index.size)


def _write_table(path: Path, table: Table, prov: dict, fmt: str) -> None:
    with atomic_output(path) as tmp:
        if fmt == "fits":
            hdu = fits.BinTableHDU(table)
            for key, value in prov.items():
                hdu.header[f"HIERARCH {key}"] = value
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
        else:
            table.meta.update(prov)
            table.write(tmp, format=fmt)


def write_index(out_dir: str | Path, idx: SurveyIndex, config: dict) -> None:
    """Write tiles.json, assignment.fits, rejects.ecsv and shards.json (docs/formats.md)."""
    out = Path(out_dir)
    survey = config["survey"]
    prov = provenance(config, inputs=[survey["tiles"], survey["catalog"]])
    shard_of = {t: s["shard"] for s in idx.shards for t in s["tiles"]}
    _write_table(out / "assignment.fits", idx.assignment, prov, "fits")
    _write_table(out / "rejects.ecsv", idx.rejects, prov, "ascii.ecsv")
    write_json(out / "tiles.json", {
        "tiles": [{"tile": h.tile, "shape": list(h.shape), "pixscale_arcsec": h.pixscale_arcsec,
                   "footprint_radec": footprint_radec(h.wcs, h.shape), "n_objects": int(c),
                   "shard": shard_of.get(h.tile)}
                  for h, c in zip(idx.headers, idx.counts, strict=True)],
        "bands": list(survey["bands"]), "n_catalog": idx.n_catalog,
        "n_assigned": len(idx.assignment), "n_rejected": len(idx.rejects), "provenance": prov})
    write_json(out / "shards.json", {
        "tiles_per_shard": config["index"]["tiles_per_shard"], "n_shards": len(idx.shards),
        "shards": idx.shards, "provenance": prov})


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    if args.strict:
        config["strict"] = True
    idx = build_index(config)
    write_index(args.out_dir, idx, config)
    for h, c in zip(idx.headers, idx.counts, strict=True):
        log.info("tile %s: %d objects", h.tile, c)
    n_empty = int((idx.counts == 0).sum())
    if n_empty:
        log.info("%d tiles hold no catalog object and join no shard", n_empty)
    for why, c in sorted(Counter(idx.rejects["reason"].tolist()).items()):
        log.warning("rejected %d objects: %s (listed in %s)", c, why,
                    os.path.join(args.out_dir, "rejects.ecsv"))
    seconds = time.perf_counter() - start
    log.info("survey index: %d tiles, %d shards, %d catalog objects, %d assigned, %d rejected "
             "in %.1f s (%.0f objects/s)", len(idx.headers), len(idx.shards), idx.n_catalog,
             len(idx.assignment), len(idx.rejects), seconds, idx.n_catalog / max(seconds, 1e-9))
    return 0


def parser():
    """Command-line parser of ``python -m skysift.index`` (also ``python -m skysift.survey``)."""
    p = cli.parser("Index the survey: footprints, object -> tile assignment, rejects, shards.")
    p.add_argument("--out-dir", default="results/index",
                   help="directory of tiles.json, assignment.fits, rejects.ecsv, shards.json")
    p.add_argument("--strict", action="store_true",
                   help="catalog rows with unusable coordinates are an error (config strict)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the survey index (results/index); see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
