"""Cut fixed-size multi-band stamps around the objects the survey index assigned to a shard.

Stamp geometry (docs/formats.md): the object's pixel is ``round(pos)``; the stamp covers
``[round(pos) - s//2, round(pos) - s//2 + s)`` on each axis, so the object lies in stamp
pixel ``s//2``. Pixels outside the tile are NaN; NaN and masked pixels are NaN too; the
per-object ``flags`` bit mask says which (``FLAG_BITS``).

Speed: a stamp fully inside the tile is one slice copy of all bands (no padded copy of the
tile, no fancy-index gather), summed while still in cache; only the objects whose stamp
sum is not finite (edge, NaN, masked) are looked at pixel by pixel. Memory: one tile (its
bands, plus one bool per pixel and band with a mask; the arrays are reused from tile to
tile) plus one batch of stamps; the shard's stamps stream to disk.

    skysift cutouts --config-json J --shard s0000 --index-dir results/index \
        --out results/cutouts/s0000.h5 [--rejects results/cutouts/s0000.rejects.ecsv]
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from skysift import cli
from skysift.errors import SurveyError
from skysift.io import atomic_output, id_array, provenance, write_attrs
from skysift.stamps.cut import (
    band_has_valid,
    blank_positions,
    blank_seed,
    extract,
    tile_runs,
)
from skysift.stamps.flags import FLAG_BITS
from skysift.survey.shardrejects import write_shard_rejects
from skysift.survey.shards import read_assignment_rows
from skysift.survey.tiles import read_tile

log = logging.getLogger(__name__)

#: Version of the cutouts HDF5 layout (attr ``layout_version``), docs/formats.md.
LAYOUT_VERSION = 2
#: Stamp bytes cut per batch: bounds the memory beside the tile.
BATCH_BYTES = 64 * 2**20










def _median(values: list) -> float | list:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        finite = arr[np.isfinite(arr)]
        return float(np.median(finite)) if finite.size else float("nan")
    return [_median(arr[:, b].tolist()) for b in range(arr.shape[1])]


class _Writer:
    """Streams stamps into ``images`` of an open HDF5 file, chunk-aligned by the chunk cache."""

    def __init__(self, fh: h5py.File, n_band: int, size: int, config: dict):
        chunk = config["preprocess"]["chunk_objects"]
        comp = config["cutouts"]["compression"]
        kw = {} if comp == "none" else {"compression": comp, "shuffle": True}
        if comp == "gzip":
            kw["compression_opts"] = 1
        self.images = fh.create_dataset("images", shape=(0, n_band, size, size),
                                        maxshape=(None, n_band, size, size), dtype=np.float32,
                                        chunks=(chunk, n_band, size, size), **kw)
        self.n = 0

    def append(self, stamps: np.ndarray) -> None:
        self.images.resize(self.n + len(stamps), axis=0)
        self.images[self.n:self.n + len(stamps)] = stamps
        self.n += len(stamps)


def _tile_info(stack, sel: np.ndarray, empty: list[str]) -> dict:
    """Entry of one tile in attr ``tile_info``: geometry, photometry, files, object counts."""
    return {"pixscale_arcsec": stack.pixscale_arcsec, "shape": list(stack.shape),
            "psf_fwhm_arcsec": stack.psf_fwhm_arcsec,
            "zeropoint": stack.zeropoint, "paths": stack.paths,
            "n_objects": 0 if empty else len(sel),
            "n_rejected": len(sel) if empty else 0}


def _reject_tile(config: dict, tile: str, stack, bands: list[str], empty: list[str],
                 sel: np.ndarray) -> tuple[np.ndarray, str]:
    """(rows, reason) of a tile with a band without valid pixels; an error when strict."""
    why = f"tile {tile} band {empty[0]}: no valid pixel (all NaN or masked)"
    if config.get("strict"):
        raise SurveyError(f"{stack.paths[bands.index(empty[0])]}: {why}; fix or "
                          "remove the tile, or set strict: false to reject its "
                          f"{len(sel)} objects")
    log.warning("%s: rejecting its %d objects", why, len(sel))
    return sel, why


def _cut_tile(writer: _Writer, stack, rows: dict, sel: np.ndarray, size: int, batch: int,
              buf: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut and write the stamps of one tile's rows ``sel`` in batches: [(rows, flags (b,))]."""
    kept = []
    pos = np.column_stack([rows["x_pix"][sel], rows["y_pix"][sel]]).astype(np.float64)
    for lo in range(0, len(sel), batch):
        part = pos[lo:lo + batch]
        stamps, flags = extract(stack.images, part, size, stack.masked, out=buf[:len(part)])
        writer.append(stamps)
        kept.append((sel[lo:lo + batch], flags))
    return kept


def _file_attrs(config: dict, bands: list[str], tiles: list[str], label: str, size: int,
                info: dict, n_blank: int) -> dict:
    """Attributes of the cutouts file: bands, tiles, per-tile medians, layout, provenance."""
    per_tile = list(info.values())
    return {
        "bands": bands, "tiles": tiles, "shard": label, "stamp_size_pix": size,
        "pixscale_arcsec": _median([i["pixscale_arcsec"] for i in per_tile]),
        "psf_fwhm_arcsec": _median([i["psf_fwhm_arcsec"] for i in per_tile]),
        "zeropoint": _median([i["zeropoint"] for i in per_tile]),
        "tile_info": info, "flag_bits": FLAG_BITS, "layout_version": LAYOUT_VERSION,
        "n_blank": n_blank,
        "blank_min_distance_arcsec": config["cutouts"]["blank_min_distance_arcsec"],
        **provenance(config, step="cutouts", shard=label,
                     inputs=[p for i in per_tile for p in i["paths"]])}


def cut_objects(config: dict, rows: dict[str, np.ndarray], out: str | Path,
                rejects_out: str | Path, label: str) -> dict:
    """Cut the stamps of ``rows`` (assignment columns, sorted by tile) into ``out``.

    Tiles are read one at a time; a tile band without any valid pixel rejects the tile's
    objects into ``rejects_out`` (an error when ``config["strict"]``). Each kept tile also
    gives ``cutouts.n_blank`` blank-sky stamps (:func:`blank_positions`), written to the
    group ``blank/``. Returns counts.
    """
    size = config["cutouts"]["stamp_size_pix"]
    bands = list(config["survey"]["bands"])
    chunk = config["preprocess"]["chunk_objects"]
    batch = max(1, BATCH_BYTES // (len(bands) * size * size * 4))
    tiles, starts = tile_runs(rows)
    kept, rejected, info, counts, pool = [], [], {}, dict.fromkeys(FLAG_BITS, 0), {}
    blanks: list[tuple[str, np.ndarray, np.ndarray]] = []
    buf = np.empty((min(batch, len(rows["tile"])), len(bands), size, size), np.float32)
    rdcc = 4 * chunk * len(bands) * size * size * 4 + 2**20
    with atomic_output(out) as tmp, h5py.File(tmp, "w", rdcc_nbytes=rdcc) as fh:
        writer = _Writer(fh, len(bands), size, config)
        for t, tile in enumerate(tiles):
            sel = np.arange(starts[t], starts[t + 1])
            stack = None  # only the pool keeps the previous tile's arrays, for reuse
            stack = read_tile(config, tile, pool)
            empty = [b for b, img in zip(bands, stack.images, strict=True)
                     if not band_has_valid(img)]
            info[tile] = _tile_info(stack, sel, empty)
            pool.update(images=stack.images, masked=stack.masked)
            if empty:
                rejected.append(_reject_tile(config, tile, stack, bands, empty, sel))
                continue
            kept.extend(_cut_tile(writer, stack, rows, sel, size, batch, buf))
            blanks.append((tile, *blank_stamps(config, tile, stack, rows)))
        keep = np.concatenate([k for k, _ in kept]) if kept else np.zeros(0, np.int64)
        flags = np.concatenate([f for _, f in kept]) if kept else np.zeros(0, np.uint8)
        _write_columns(fh, rows, keep, flags, tiles)
        n_blank = _write_blank(fh, blanks, size, len(bands), tiles)
        write_attrs(fh, _file_attrs(config, bands, tiles, label, size, info, n_blank))
    for name, bit in FLAG_BITS.items():
        counts[name] = int(np.count_nonzero(flags & bit))
    _write_rejects(rejects_out, rows, rejected, config)
    return {"n_objects": len(keep), "n_rejected": sum(len(s) for s, _ in rejected),
            "n_tiles": len(tiles), "flags": counts, "n_blank": n_blank}






def blank_stamps(config: dict, tile: str, stack, rows: dict) -> tuple[np.ndarray, np.ndarray]:
    """Blank-sky stamps of one tile (``cutouts.n_blank``, ``blank_min_distance_arcsec``).

    Centres are drawn from a generator seeded by (config seed, tile name), at least the
    minimum distance from every object of the shard (all of its tiles' objects, projected
    through this tile's WCS), stamps wholly inside the tile; stamps holding NaN or masked
    pixels are dropped. Returns stamps (k, band, s, s) float32 and pos_xy (k, 2) float64.
    """
    ccfg = config["cutouts"]
    size, n = ccfg["stamp_size_pix"], int(ccfg["n_blank"])
    if n <= 0:
        return np.zeros((0, len(stack.images), size, size), np.float32), np.zeros((0, 2))
    x, y = stack.wcs.all_world2pix(np.asarray(rows["ra"], float), np.asarray(rows["dec"],
                                                                            float), 0)
    rng = np.random.default_rng(blank_seed(config["seed"], tile))
    min_pix = ccfg["blank_min_distance_arcsec"] / stack.pixscale_arcsec
    pos = blank_positions(stack.shape, np.column_stack([x, y]), size, min_pix, 4 * n, rng)
    stamps, flags = extract(stack.images, pos, size, stack.masked)
    good = np.flatnonzero(flags == 0)[:n]
    if good.size < n:
        log.info("tile %s: %d of %d blank-sky stamps (crowded or masked tile)", tile,
                 good.size, n)
    return stamps[good], pos[good]


def _write_blank(fh: h5py.File, blanks: list, size: int, n_band: int, tiles: list[str]) -> int:
    """Group ``blank/``: ``images``, ``pos_xy`` and ``tile`` of the blank-sky stamps."""
    images = [b[1] for b in blanks]
    grp = fh.create_group("blank")
    grp.create_dataset("images", data=np.concatenate(images) if images else
                       np.zeros((0, n_band, size, size), np.float32))
    grp.create_dataset("pos_xy", data=np.concatenate([b[2] for b in blanks]).reshape(-1, 2)
                       if blanks else np.zeros((0, 2)))
    width = max([1] + [len(t.encode()) for t in tiles])
    names = [t for t, img, _ in blanks for _ in range(len(img))]
    grp.create_dataset("tile", data=np.array([t.encode() for t in names], dtype=f"S{width}"))
    return len(names)


def _write_columns(fh: h5py.File, rows: dict, keep: np.ndarray, flags: np.ndarray,
                   tiles: list[str]) -> None:
    """The per-object datasets of the rows ``keep`` (docs/formats.md)."""
    ids = np.asarray(rows["id"])[keep]
    fh.create_dataset("flags", data=flags)
    fh.create_dataset("index", data=np.asarray(rows["index"], np.int64)[keep])
    fh.create_dataset("id", data=ids if ids.dtype.kind == "S" else id_array(ids))
    for name in ("ra", "dec"):
        fh.create_dataset(name, data=np.asarray(rows[name], np.float64)[keep])
    fh.create_dataset("pos_xy", data=np.column_stack(
        [rows["x_pix"][keep], rows["y_pix"][keep]]).astype(np.float64).reshape(-1, 2))
    width = max([1] + [len(t.encode()) for t in tiles])
    fh.create_dataset("tile", data=np.char.encode(rows["tile"][keep].astype(str), "utf-8")
                      .astype(f"S{width}"))


def _write_rejects(path: str | Path, rows: dict, rejected: list, config: dict) -> None:
    write_shard_rejects(path, rows, rejected, config, "cutouts")


def default_rejects_path(out: str | Path) -> Path:
    """``results/cutouts/S.h5`` -> ``results/cutouts/S.rejects.ecsv``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".h5") + ".rejects.ecsv")


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    if args.shard:
        rows, label = read_assignment_rows(args.index_dir, shard=args.shard), args.shard
    else:
        rows, label = read_assignment_rows(args.index_dir, tile=args.tile), ""
    rejects = args.rejects or default_rejects_path(args.out)
    res = cut_objects(config, rows, args.out, rejects, label)
    seconds = time.perf_counter() - start
    size, n_band = config["cutouts"]["stamp_size_pix"], len(config["survey"]["bands"])
    mb = res["n_objects"] * n_band * size * size * 4 / 2**20
    log.info("cutouts %s: %d tiles, %d objects (%d rejected), %d bands, %d px stamps, flags %s "
             "in %.2f s (%.0f objects/s, %.0f MB/s incl. reading tiles), %d blank-sky stamps "
             "-> %s",
             args.shard or args.tile, res["n_tiles"], res["n_objects"], res["n_rejected"],
             n_band, size, json.dumps(res["flags"]), seconds,
             res["n_objects"] / max(seconds, 1e-9), mb / max(seconds, 1e-9), res["n_blank"],
             args.out)
    return 0


def parser():
    """Command-line parser of ``skysift cutouts``."""
    p = cli.parser("Cut multi-band stamps around the objects of one shard (or one tile).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--shard", help="shard name, from shards.json of the index")
    which.add_argument("--tile", help="one tile (the {tile} of survey.tiles), for checks by hand")
    p.add_argument("--index-dir", default="results/index",
                   help="directory written by skysift index")
    p.add_argument("--out", required=True, help="output HDF5, e.g. results/cutouts/{shard}.h5")
    p.add_argument("--rejects", help="objects rejected here (ECSV); default: beside --out, "
                   "NAME.rejects.ecsv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write the cutouts HDF5 of one shard; see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
