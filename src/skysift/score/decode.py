"""One tile's objects as normalised stamps, in memory: the work of a decode worker of the
scoring path (:mod:`skysift.score.stream`).

Reads the tile's bands once with the one tile reader (:func:`skysift.survey.tiles.read_tile`,
fpack decompression included), cuts with the one cutter (:func:`skysift.stamps.cut.extract`)
and normalises with the preprocess step's functions (:func:`skysift.stamps.normalise.border_stats`
and :func:`~skysift.stamps.normalise.scaled`, per stamp, so bit-identical to
``results/stamps``). Imports no torch: a worker process starts in a second and holds a tile,
not a model.

Memory of one call: the tile's bands (band × ny × nx float32, + 1 byte per pixel and band
with a mask), its objects' normalised stamps (n × band × s² float32), and one batch of raw
stamps (:data:`BATCH_BYTES`) being normalised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from skysift.errors import SurveyError
from skysift.stamps.cut import band_has_valid, extract
from skysift.stamps.normalise import border_stats, scaled
from skysift.survey.tiles import read_tile

log = logging.getLogger(__name__)

#: Raw stamp bytes cut and normalised at once (the temporaries of normalisation scale with it).
BATCH_BYTES = 32 * 2**20


@dataclass
class TileStamps:
    """What a decode worker returns for one tile.

    ``stamps`` (n, band, s, s) float32 normalised and ``flags`` (n,) uint8 of the tile's rows,
    in the order given; both None when ``rejected`` names why the tile's objects were
    rejected (a band without any valid pixel). ``peak_kib``: the worker's own high-water
    mark (VmHWM) so far, None where /proc is absent.
    """

    tile: str
    stamps: np.ndarray | None
    flags: np.ndarray | None
    pixscale_arcsec: float
    path: str
    rejected: str | None
    seconds: float
    peak_kib: int | None
    zeropoint: list | None = None  # (band,) AB zero points of the tile


def peak_kib() -> int | None:
    """VmHWM of this process (KiB): its own peak resident memory, not a parent's."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def normalised_stamps(images: np.ndarray, pos_xy: np.ndarray, size_pix: int,
                      masked: np.ndarray | None, cfg: Mapping
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Cut and normalise the stamps of ``pos_xy`` from a tile's pixels, in batches.

    Parameters
    ----------
    images : (band, y, x) float32, NaN where invalid (as ``read_tile`` leaves them).
    pos_xy : (n, 2) float64 zero-based pixel coordinates (x, y).
    size_pix : side of a stamp.
    masked : (band, y, x) bool or None, the mask's rejected pixels (flags only).
    cfg : the ``preprocess`` config block.

    Returns
    -------
    stamps : (n, band, size_pix, size_pix) float32, normalised as ``preprocess`` writes them.
    flags : (n,) uint8, the cutter's flags.
    """
    n, n_band = len(pos_xy), images.shape[0]
    stamps = np.empty((n, n_band, size_pix, size_pix), np.float32)
    flags = np.empty(n, np.uint8)
    batch = max(1, BATCH_BYTES // (n_band * size_pix * size_pix * 4))
    buf = np.empty((min(batch, n), n_band, size_pix, size_pix), np.float32)
    for lo in range(0, n, batch):
        part = pos_xy[lo:lo + batch]
        raw, flags[lo:lo + len(part)] = extract(images, part, size_pix, masked,
                                                out=buf[:len(part)])
        stamps[lo:lo + len(part)] = scaled(raw, border_stats(raw, cfg), cfg)
    return stamps, flags


def decode_tile(config: Mapping, tile: str, pos_xy: np.ndarray, normalise: bool = True
                ) -> TileStamps:
    """Read ``tile``, cut the stamps at ``pos_xy`` (n, 2) and normalise them (``normalise``
    false: the raw stamps, as ``results/cutouts`` holds them, for the review gallery).

    A band without any valid pixel rejects the tile's objects (``rejected`` says why), as
    the cutouts step does; with ``config["strict"]`` it raises SurveyError instead.
    """
    t0 = time.perf_counter()
    stack = read_tile(dict(config), tile)
    bands = list(config["survey"]["bands"])
    empty = [b for b, img in zip(bands, stack.images, strict=True) if not band_has_valid(img)]
    if empty:
        why = f"tile {tile} band {empty[0]}: no valid pixel (all NaN or masked)"
        if config.get("strict"):
            raise SurveyError(f"{stack.paths[bands.index(empty[0])]}: {why}; fix or remove "
                              f"the tile, or set strict: false to reject its {len(pos_xy)} "
                              "objects")
        return TileStamps(tile, None, None, stack.pixscale_arcsec, stack.paths[0], why,
                          time.perf_counter() - t0, peak_kib(), list(stack.zeropoint))
    pos = np.asarray(pos_xy, np.float64).reshape(-1, 2)
    size = config["cutouts"]["stamp_size_pix"]
    if normalise:
        stamps, flags = normalised_stamps(stack.images, pos, size, stack.masked,
                                          config["preprocess"])
    else:
        stamps, flags = extract(stack.images, pos, size, stack.masked)
    return TileStamps(tile, stamps, flags, stack.pixscale_arcsec, stack.paths[0], None,
                      time.perf_counter() - t0, peak_kib(), list(stack.zeropoint))
