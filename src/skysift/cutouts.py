"""Cut fixed-size multi-band stamps around the objects the survey index assigned to a tile.

Stamp geometry (docs/formats.md): the object's pixel is ``round(pos)``; the stamp covers
``[round(pos) - s//2, round(pos) - s//2 + s)`` on each axis, so the object lies in stamp
pixel ``s//2``. Pixels outside the tile are NaN and flag the object EDGE; NaN pixels inside
the tile flag it MASKED.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import numpy as np
from astropy.io import fits
from numpy.lib.stride_tricks import sliding_window_view

from skysift import cli
from skysift.errors import DataError
from skysift.io import id_array, provenance, write_stamps
from skysift.survey import read_tile, read_tile_header

log = logging.getLogger(__name__)

#: Flag bits (uint8), docs/formats.md.
EDGE = 1
MASKED = 2
#: Stamp pixels gathered per batch (bounds the temporary copy to ~32 MB of float32).
BATCH_PIXELS = 2**23
ASSIGNMENT_COLUMNS = ("index", "id", "ra", "dec", "tile", "x_pix", "y_pix")


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


def extract(images: np.ndarray, pos_xy: np.ndarray, size_pix: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``size_pix`` x ``size_pix`` stamps of every band around pixel positions.

    Parameters
    ----------
    images : (band, y, x) float array, tile pixels.
    pos_xy : (n, 2) float, 0-based pixel coordinates (x, y) of the objects.
    size_pix : side of a stamp, pixels (odd or even).

    Returns
    -------
    stamps : (n, band, size_pix, size_pix) float32, NaN where the stamp leaves the image.
    flags : (n,) uint8, ``EDGE`` if any stamp pixel lies outside the image, ``MASKED`` if
        any stamp pixel inside the image is NaN.

    Each band is NaN-padded once by ``size_pix`` pixels and all stamps are gathered from a
    sliding-window view of it, in batches of objects.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (band, y, x), got shape {images.shape}")
    s = int(size_pix)
    if s < 1:
        raise ValueError(f"size_pix must be positive, got {size_pix}")
    n_band, ny, nx = images.shape
    origin = stamp_origin(pos_xy, s)
    n = len(origin)
    ox, oy = origin[:, 0], origin[:, 1]
    edge = (ox < 0) | (oy < 0) | (ox + s > nx) | (oy + s > ny)
    # stamps wholly outside start inside the padding: same all-NaN result, valid index
    px, py = np.clip(ox, -s, nx) + s, np.clip(oy, -s, ny) + s
    stamps = np.empty((n, n_band, s, s), np.float32)
    has_nan = np.zeros(n, bool)
    batch = max(1, BATCH_PIXELS // (s * s))
    padded = np.empty((ny + 2 * s, nx + 2 * s), np.float32)
    for b in range(n_band):
        padded.fill(np.nan)
        padded[s:s + ny, s:s + nx] = images[b]
        windows = sliding_window_view(padded, (s, s))
        for lo in range(0, n, batch):
            sl = slice(lo, lo + batch)
            stamps[sl, b] = windows[py[sl], px[sl]]
            has_nan[sl] |= np.isnan(stamps[sl, b]).any(axis=(1, 2))
    masked = has_nan & ~edge
    # edge stamps hold padding NaN: only NaN at in-image pixels count as MASKED
    offs = np.arange(s)
    todo = np.flatnonzero(has_nan & edge)
    for lo in range(0, len(todo), max(1, batch // n_band)):
        i = todo[lo:lo + max(1, batch // n_band)]
        row_in = (oy[i, None] + offs >= 0) & (oy[i, None] + offs < ny)
        col_in = (ox[i, None] + offs >= 0) & (ox[i, None] + offs < nx)
        inside = row_in[:, None, :, None] & col_in[:, None, None, :]
        masked[i] = (np.isnan(stamps[i]) & inside).any(axis=(1, 2, 3))
    flags = np.where(edge, EDGE, 0).astype(np.uint8) | np.where(masked, MASKED, 0).astype(np.uint8)
    return stamps, flags


def read_assignment(path: str, tile: str) -> dict[str, np.ndarray]:
    """Columns of the survey index ``assignment.fits`` for the rows assigned to ``tile``.

    The table is memory-mapped and only the tile's rows are copied, so every tile job can
    read a survey-sized assignment.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: assignment not found; run the survey index first "
                        f"(snakemake {path})")
    try:
        with fits.open(path, memmap=True) as hdul:
            data = hdul[1].data
            names = data.columns.names if data is not None else []
            missing = [c for c in ASSIGNMENT_COLUMNS if c not in names]
            if missing:
                raise DataError(f"{path}: missing columns {missing}; delete it and re-run "
                                "the survey index")
            tiles = np.char.strip(np.char.decode(np.asarray(data["tile"], "S"), "utf-8"))
            rows = np.flatnonzero(tiles == tile)
            return {c: np.array(data[c][rows]) for c in ASSIGNMENT_COLUMNS}
    except DataError:
        raise
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise DataError(f"{path}: cannot read the assignment ({exc}); delete it and re-run "
                        "the survey index") from None


def _ids(values) -> np.ndarray:
    """Ids for HDF5: int64, or UTF-8 bytes kept as they are in the FITS table."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind == "S" else id_array(arr)


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    size = config["cutouts"]["stamp_size_pix"]
    rows = read_assignment(args.assignment, args.tile)
    if len(rows["index"]):
        stack = read_tile(config, args.tile)
        images = stack.images
    else:  # still checks the tile's headers and writes a valid n=0 file, reads no pixels
        stack = read_tile_header(config, args.tile)
        images = np.empty((len(stack.bands), 0, 0), np.float32)
    pos_xy = np.stack([np.asarray(rows["x_pix"], np.float64),
                       np.asarray(rows["y_pix"], np.float64)], axis=1).reshape(-1, 2)
    stamps, flags = extract(images, pos_xy, size)
    n_edge = int(np.count_nonzero(flags & EDGE))
    n_masked = int(np.count_nonzero(flags & MASKED))
    arrays = {"images": stamps, "flags": flags,
              "index": np.asarray(rows["index"], np.int64), "id": _ids(rows["id"]),
              "ra": np.asarray(rows["ra"], np.float64), "dec": np.asarray(rows["dec"], np.float64),
              "pos_xy": pos_xy}
    attrs = {"bands": stack.bands, "tile": args.tile, "stamp_size_pix": size,
             "pixscale_arcsec": stack.pixscale_arcsec,
             "psf_fwhm_arcsec": stack.psf_fwhm_arcsec, "zeropoint": stack.zeropoint,
             **provenance(config, tile=args.tile, inputs=stack.paths + [args.assignment])}
    write_stamps(args.out, arrays, attrs, chunk_objects=config["preprocess"]["chunk_objects"])
    if n_edge:
        log.info("%d of %d stamps cross the tile edge (EDGE, NaN-padded)", n_edge, len(flags))
    if n_masked:
        log.info("%d of %d stamps hold NaN pixels inside the tile (MASKED)", n_masked, len(flags))
    seconds = time.perf_counter() - start
    log.info("cutouts %s: %d objects, %d bands, %d px stamps, %d EDGE, %d MASKED in %.1f s "
             "(%.0f objects/s) -> %s", args.tile, len(flags), len(stack.bands), size, n_edge,
             n_masked, seconds, len(flags) / max(seconds, 1e-9), args.out)
    return 0


def parser():
    """Command-line parser of ``python -m skysift.cutouts``."""
    p = cli.parser("Cut multi-band stamps around the objects assigned to one tile.")
    p.add_argument("--tile", required=True, help="tile name (the {tile} of survey.tiles)")
    p.add_argument("--assignment", default="results/index/assignment.fits",
                   help="assignment.fits written by python -m skysift.survey")
    p.add_argument("--out", required=True, help="output HDF5, e.g. results/cutouts/{tile}.h5")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the cutouts HDF5 of one tile; see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
