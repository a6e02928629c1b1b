"""The stamps the review pages show, cut again from the tiles after ranking (rule
``review_stamps``): ``results/review/stamps.h5``.

After gather, each task's page holds its candidates, a random sample in bins of score and
known lenses as checks (:func:`skysift.review.selection.page_selection`, seeded: the review
job draws the same objects). This step draws every task's page, finds each object's shard
and tile in the survey index, reads only the tiles that hold one (the one tile reader,
:func:`skysift.survey.tiles.read_tile`, through the scoring path's decode pool,
:func:`skysift.score.stream.decoded_tiles`, without normalisation) and writes their raw
float32 stamps and flags: the pixels ``results/cutouts/{shard}.h5`` holds for the same
objects (same reader, same cutter; a test), so no shard needs cutouts for the gallery.

One job for every task, after gather: the pages are small (``infer.top_k`` and a fraction
more per task), a union reads a tile shared by two tasks' pages once, and the page needs
the survey-wide ranking anyway. Memory: ``infer.tiles_in_flight`` decoded tiles and the
pages' stamps.

Layout (docs/formats.md): datasets ``images`` (n, band, s, s) float32 raw flux, ``flags``
(n,) uint8, ``index`` (n,) int64 sorted, ``id`` (verbatim), ``ra``, ``dec``, ``pos_xy``,
``tile`` and ``zeropoint`` (n, band) float64, the AB zero point of each object's tile; attrs
as a cutouts file (``bands``, ``tiles``, ``stamp_size_pix``, ``pixscale_arcsec`` and
``zeropoint`` medians, ``flag_bits``, provenance).

    skysift review_stamps --config-json J --index-dir results/index \\
        --candidates results/candidates/*.csv --catalog results/catalog.fits \\
        --out results/review/stamps.h5
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from skysift import cli, paths
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, id_array, provenance, write_attrs
from skysift.modelspec import primary_specs
from skysift.review.sample import read_scored_catalog
from skysift.review.selection import (
    labelled_test_positives,
    page_candidates,
    page_selection,
    read_candidates,
)
from skysift.score.decode import peak_kib
from skysift.score.stream import decoded_tiles
from skysift.stamps.flags import FLAG_BITS
from skysift.survey.shards import concat, load_shards, read_assignment_rows

log = logging.getLogger(__name__)

#: Version of the review stamps layout (attr ``layout_version``).
LAYOUT_VERSION = 1


def page_objects(config: Mapping, candidates: Mapping[str, str | Path], catalog: str | Path,
                 split: str | Path | None = None) -> tuple[np.ndarray, set[str] | None]:
    """Catalog ``index`` (sorted, unique) of every object a task's page shows, and their
    tiles (None when the catalog has no ``tile`` column).

    candidates : {task: results/candidates/{task}.csv}; catalog : results/catalog.fits;
    split : results/split.fits (checks from labelled test positives, as rule review draws).
    """
    index, tiles = [], set()
    has_tiles = True
    for task, path in candidates.items():
        spec = primary_specs(config)[task]
        cands = read_candidates(path, spec.column)
        cat = read_scored_catalog(catalog, spec.column)
        checks = labelled_test_positives(config, task, catalog, split)
        page = page_candidates(page_selection(config, task, cands, cat, checks), cat)
        index.append(page.index)
        if page.tile is None:
            has_tiles = False
        else:
            tiles.update(page.tile)
    wanted = np.unique(np.concatenate(index)) if index else np.zeros(0, np.int64)
    return wanted.astype(np.int64), (tiles if has_tiles else None)


def listed_objects(lists: Sequence[str | Path]) -> tuple[np.ndarray, set[str] | None]:
    """Catalog ``index`` (sorted, unique) and tiles of the objects of candidate-format lists
    taken as they are (e.g. ``results/similar/{task}.csv``: no sample, no checks)."""
    index, tiles, has_tiles = [], set(), True
    for path in lists:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        try:
            index.append(np.array([int(r["index"]) for r in rows], np.int64))
        except (KeyError, ValueError) as exc:
            raise DataError(f"{path}: column 'index' missing or malformed ({exc}); write the "
                            "list again with the step that makes it") from None
        if any(not (r.get("tile") or "").strip() for r in rows):
            has_tiles = False  # a row without its tile: every shard is searched
        tiles.update(r["tile"].strip() for r in rows if (r.get("tile") or "").strip())
    wanted = np.unique(np.concatenate(index)) if index else np.zeros(0, np.int64)
    return wanted.astype(np.int64), (tiles if has_tiles else None)


def wanted_rows(index_dir: str | Path, wanted: np.ndarray, tiles: set[str] | None
                ) -> dict[str, np.ndarray]:
    """The assignment rows (tile, pixel position, ...) of the catalog rows ``wanted``, from
    the shards holding their ``tiles`` (every shard when None), sorted by tile and index.

    Raises DataError when one is in no shard (the index changed since gather: stale files).
    """
    parts = []
    for entry in load_shards(index_dir)["shards"]:
        if tiles is not None and not tiles & set(entry["tiles"]):
            continue
        rows = read_assignment_rows(index_dir, shard=entry["shard"])
        keep = np.flatnonzero(np.isin(rows["index"], wanted))
        if keep.size:
            parts.append({c: v[keep] for c, v in rows.items()})
    rows = concat(parts) if parts else None
    found = np.zeros(0, np.int64) if rows is None else rows["index"]
    missing = np.setdiff1d(wanted, found)
    if missing.size:
        raise DataError(f"{index_dir}: {missing.size} page objects (e.g. catalog index "
                        f"{missing[:5].tolist()}) are in no shard of the survey index; stale "
                        "files: re-run gather and review (snakemake --forcerun gather)")
    if rows is None:
        return {}
    order = np.lexsort((rows["index"], rows["tile"]))
    return {c: v[order] for c, v in rows.items()}


def cut_rows(config: Mapping, rows: Mapping[str, np.ndarray]) -> dict:
    """Raw stamps, flags and tile zero points of ``rows`` (sorted by tile), cut from the
    tiles in the decode pool of the scoring path; DataError for an object on a rejected
    tile (the catalog never holds one: stale files)."""
    n, size = len(rows["index"]), config["cutouts"]["stamp_size_pix"]
    n_band = len(config["survey"]["bands"])
    out = {"images": np.full((n, n_band, size, size), np.nan, np.float32),
           "flags": np.zeros(n, np.uint8), "zeropoint": np.full((n, n_band), np.nan),
           "pixscale": [], "tiles": [], "inputs": []}
    for sel, tile in decoded_tiles(config, rows, int(config["infer"]["tiles_in_flight"]),
                                   normalise=False):
        if tile.rejected:
            raise DataError(f"{tile.rejected}: yet {len(sel)} of its objects are on a review "
                            "page; stale files: re-run infer, gather and review")
        out["images"][sel], out["flags"][sel] = tile.stamps, tile.flags
        out["zeropoint"][sel] = np.asarray(tile.zeropoint, np.float64)[None, :]
        out["pixscale"].append(tile.pixscale_arcsec)
        out["tiles"].append(tile.tile)
        out["inputs"].append(tile.path)
    return out


def write_review_stamps(path: str | Path, config: Mapping, rows: Mapping[str, np.ndarray],
                        cut: Mapping) -> None:
    """``results/review/stamps.h5`` (module docstring), atomically."""
    n_band = len(config["survey"]["bands"])
    ids = np.asarray(rows["id"]) if rows else np.zeros(0, np.int64)
    tiles = cut["tiles"]
    width = max([1] + [len(t.encode()) for t in tiles])
    zp = cut["zeropoint"]
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("images", data=cut["images"])
        fh.create_dataset("flags", data=cut["flags"])
        fh.create_dataset("index", data=np.asarray(rows.get("index", []), np.int64))
        fh.create_dataset("id", data=ids if ids.dtype.kind == "S" else id_array(ids))
        for name in ("ra", "dec"):
            fh.create_dataset(name, data=np.asarray(rows.get(name, []), np.float64))
        fh.create_dataset("pos_xy", data=np.column_stack(
            [rows.get("x_pix", []), rows.get("y_pix", [])]).astype(np.float64).reshape(-1, 2))
        fh.create_dataset("tile", data=np.char.encode(
            np.asarray(rows.get("tile", []), str), "utf-8").astype(f"S{width}"))
        fh.create_dataset("zeropoint", data=zp)
        with np.errstate(all="ignore"):
            medians = [float(np.nanmedian(zp[:, b])) if np.isfinite(zp[:, b]).any()
                       else float("nan") for b in range(n_band)]
        pix = np.asarray(cut["pixscale"], float)
        write_attrs(fh, {
            "bands": list(config["survey"]["bands"]), "tiles": tiles,
            "stamp_size_pix": config["cutouts"]["stamp_size_pix"],
            "pixscale_arcsec": float(np.median(pix)) if pix.size else float("nan"),
            "zeropoint": medians, "flag_bits": FLAG_BITS, "layout_version": LAYOUT_VERSION,
            **provenance(config, step="review_stamps", inputs=cut["inputs"])})


def review_stamps(config: Mapping, index_dir: str | Path, candidates: Mapping[str, str | Path],
                  catalog: str | Path | None, out: str | Path,
                  split: str | Path | None = None, listed: bool = False) -> dict:
    """Cut every page object of every task from the tiles into ``out``; returns counts.
    ``listed``: cut the objects of the lists ``candidates`` as they are
    (:func:`listed_objects`; the catalog is not read)."""
    wanted, tiles = (listed_objects(list(candidates.values())) if listed
                     else page_objects(config, candidates, catalog, split))
    rows = wanted_rows(index_dir, wanted, tiles) if wanted.size else {}
    n_band, size = len(config["survey"]["bands"]), config["cutouts"]["stamp_size_pix"]
    cut = (cut_rows(config, rows) if rows else
           {"images": np.zeros((0, n_band, size, size), np.float32),
            "flags": np.zeros(0, np.uint8), "zeropoint": np.zeros((0, n_band)),
            "pixscale": [], "tiles": [], "inputs": []})
    if rows:  # cut tile by tile; written in index order
        order = np.argsort(rows["index"], kind="stable")
        rows = {c: v[order] for c, v in rows.items()}
        cut = {**cut, **{k: cut[k][order] for k in ("images", "flags", "zeropoint")}}
    write_review_stamps(out, config, rows, cut)
    return {"n_objects": int(wanted.size), "n_tiles": len(cut["tiles"])}


def _task_of(path: str | Path, tasks: Sequence[str]) -> str:
    """The task of a candidate list ``results/candidates/{task}.csv``."""
    stem = Path(path).stem
    if stem not in tasks:
        raise DataError(f"{path}: not the candidate list of a task ({', '.join(tasks)}); pass "
                        "results/candidates/{task}.csv")
    return stem


def parser():
    """The ``skysift review_stamps`` argument parser."""
    p = cli.parser("Cut the objects every review page shows from the tiles, after ranking.")
    p.add_argument("--index-dir", default=paths.INDEX_DIR, help="the survey index directory")
    p.add_argument("--candidates", nargs="+", required=True,
                   help="results/candidates/{task}.csv of every task")
    p.add_argument("--catalog", default=None, help="results/catalog.fits (gather); not "
                   "with --listed")
    p.add_argument("--listed", action="store_true",
                   help="cut the objects of the --candidates lists as they are (e.g. "
                        "results/similar/{task}.csv): no random sample, no checks")
    p.add_argument("--out", required=True, help="results/review/stamps.h5")
    p.add_argument("--split", default=None,
                   help="results/split.fits: the checks as rule review draws them")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write results/review/stamps.h5; returns the exit code."""
    def body(args) -> int:
        t0 = time.perf_counter()
        config = cli.load_config(args)
        tasks = [t["name"] for t in config["tasks"]]
        if not args.listed and args.catalog is None:
            raise ConfigError("skysift review_stamps: pass --catalog (the pages are drawn "
                              "from it), or --listed to cut the lists as they are")
        candidates = ({str(p): p for p in args.candidates} if args.listed
                      else {_task_of(p, tasks): p for p in args.candidates})
        res = review_stamps(config, args.index_dir, candidates, args.catalog, args.out,
                            args.split, args.listed)
        seconds = time.perf_counter() - t0
        log.info("review stamps: %d page objects of %d tasks cut from %d tiles in %.1f s "
                 "(%.0f objects/s), peak memory %s KiB -> %s", res["n_objects"],
                 len(candidates), res["n_tiles"], seconds,
                 res["n_objects"] / max(seconds, 1e-9), peak_kib(), args.out)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
