"""The survey index: tile footprints, object -> tile assignment, rejects, and shards.

It decides, once for the whole survey, which tile cuts which catalog object: an object
inside several (overlapping) tiles goes to the tile where it lies farthest from an edge;
objects on no tile go to a rejects table with the reason. Tiles with objects are grouped
into shards of ``index.tiles_per_shard`` tiles, the unit of work of every per-object step.
Layouts of ``tiles.json``, ``assignment.fits``, ``rejects.ecsv``, ``shards.json`` and
``shards/{shard}.fits`` are in docs/formats.md.

Headers are read once per run: ``skysift check`` writes what it read to a header summary
(:mod:`skysift.survey.headers`) and the index rebuilds the tiles' WCS from it, bit for bit
(tiles whose WCS the summary cannot hold exactly, and every tile when run without a
summary, are read again).

Shards are stable (``index.keep_shards``, :mod:`skysift.survey.shards`): each shard's rows also go
to ``shards/{shard}.fits``, which survives the next index run; a shard whose tiles all still
exist keeps its name and its objects (an object a new overlapping tile would take stays with
its old tile, which also contains it), and its file is not rewritten, so adding tiles makes
new shards and re-runs only them. The price: after tiles are added, the shards (and which
tile cuts an object in an overlap) can differ from those of an index built from scratch
with all the tiles; both cut every object once. ``keep_shards: false`` rebuilds from scratch.

``training_shards.json`` records the shards the training sets draw from
(``training_set.shards: frozen``): the first index run's shards, kept (file untouched) while
every one of them still exists with the same rows, so adding tiles re-makes no training set,
retrains no model and re-scores no old shard (:func:`skysift.survey.shards.plan_training_shards`).

    skysift index --config-json J --out-dir results/index [--headers H] [--strict]
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skysift import cli
from skysift.errors import SurveyError
from skysift.ids import common_keys, id_keys
from skysift.io import atomic_output, id_array, provenance, write_json
from skysift.survey.catalog import read_catalog
from skysift.survey.files import find_tiles, missing_band_message
from skysift.survey.footprints import (
    assign_objects,
    footprint_radec,
    missing_band_reasons,
    normalise_ra,
)
from skysift.survey.headers import (
    read_header_summary,
)
from skysift.survey.shards import (
    TRAINING_SHARDS,
    concat,
    plan_shards,
    plan_training_shards,
    previous_shards,
    rows_digest,
    shard_file,
)
from skysift.survey.tiles import TileHeader, read_tile_header

log = logging.getLogger(__name__)

def load_headers(config: dict, summary: str | Path | None = None) -> list[TileHeader]:
    """Headers of every tile matching ``survey.tiles``, from ``summary`` where it has them.

    A tile missing some band files is read from the bands it has (its ``bands`` are then
    fewer than ``survey.bands``): :func:`build_index` rejects its objects. Raises
    SurveyError when no tile matches, a header is bad, or (``strict``) a band file is missing.
    """
    survey = config["survey"]
    tiles, missing = find_tiles(survey["tiles"], survey["bands"])
    if not tiles:
        raise SurveyError(f"no tile files match survey.tiles '{survey['tiles']}' (bands "
                          f"{survey['bands']}); fix the pattern, or run the mock step first "
                          "when survey.kind is mock")
    if missing and (config.get("strict") or len(missing) == len(tiles)):
        tile, absent = next(iter(missing.items()))
        raise SurveyError(missing_band_message(survey["tiles"], tile, absent)
                          + (f" ({len(missing)} tiles miss band files)" if len(missing) > 1
                             else ""))
    if missing:
        log.warning("%d of %d tiles miss band files (e.g. %s); their objects are rejected "
                    "(missing_band:<band>); strict: true makes this an error", len(missing),
                    len(tiles), missing_band_message(survey["tiles"], *next(iter(missing.items()))))
    bands = {t: [b for b in survey["bands"] if b not in missing.get(t, ())] for t in tiles}
    known = read_header_summary(summary, config) if summary else {}
    todo = [t for t in tiles if t not in known or known[t].bands != bands[t]]
    if summary:
        log.info("headers of %d of %d tiles from %s; reading %d", len(tiles) - len(todo),
                 len(tiles), summary, len(todo))
    read = {t: read_tile_header(config, t, bands[t])
            for t in cli.progress(todo, desc="headers")}
    return [read[t] if t in read else known[t] for t in tiles]


def pin_to_previous(previous: Mapping[str, dict], names: Sequence[str], ids: np.ndarray,
                    ra_deg: np.ndarray, dec_deg: np.ndarray, footprints: Sequence,
                    tile_idx: np.ndarray, x_pix: np.ndarray, y_pix: np.ndarray) -> int:
    """Keep each object a previous shard cut with the tile that cut it; return how many moved.

    An object assigned now to another tile (a new tile overlapping the old one, farther from
    its edges) goes back to its previous tile when that tile still exists, still contains
    it and the catalog row still has the same id; ``tile_idx``, ``x_pix``, ``y_pix`` (n,) are
    updated in place. Both tiles contain the object: it is still cut once, and the old
    shard keeps its objects, so it is not cut again.
    """
    pos = {name: i for i, name in enumerate(names)}
    keys = id_keys(ids, "catalog ids")
    n_moved = 0
    for shard, entry in previous.items():
        rows = entry["rows"]
        index = np.asarray(rows["index"], np.int64)
        prev = np.array([pos.get(t, -1) for t in rows["tile"].tolist()], np.int64)
        ok = (prev >= 0) & (index < len(keys))
        then = id_keys(rows["id"], f"shard {shard}: column 'id'")[ok]
        now, then = common_keys(keys[index[ok]], then)
        ok[ok] = (now == then) & (tile_idx[index[ok]] >= 0)
        ok[ok] = tile_idx[index[ok]] != prev[ok]
        for t in np.unique(prev[ok]):
            sel = index[ok & (prev == t)]
            got, x, y, _ = assign_objects(ra_deg[sel], dec_deg[sel], [footprints[t]])
            inside = got == 0
            sel = sel[inside]
            tile_idx[sel], x_pix[sel], y_pix[sel] = t, x[inside], y[inside]
            n_moved += int(inside.sum())
    return n_moved


# --------------------------------------------------------------------------- the index

@dataclass
class SurveyIndex:
    """Everything the index decides; :func:`write_index` writes it."""

    headers: list[TileHeader]
    assignment: Table  # sorted by shard, then the shard's tiles, then index
    rejects: Table
    counts: np.ndarray  # objects per tile
    shards: list[dict]
    n_catalog: int
    n_kept: int = 0    # shards kept from the previous run
    n_pinned: int = 0  # objects kept with their previous tile


def _refuse_rejects(config: dict, catalog, reason: np.ndarray) -> None:
    """Under ``strict``, raise SurveyError when a catalog row cannot be cut (``reason`` (n,))."""
    rejected = reason != ""
    if config.get("strict") and rejected.any():
        rows = np.flatnonzero(rejected)
        counts = ", ".join(f"{n} {why}" for why, n in
                           sorted(Counter(reason[rows].tolist()).items()))
        raise SurveyError(f"{catalog.path}: {rows.size} rows cannot be cut ({counts}; e.g. "
                          f"row {rows[0]}: {reason[rows[0]]}); fix their coordinates, the "
                          "tile list or the missing band files, or set strict: false to list "
                          "them in the rejects")


def _refuse_unassigned(catalog, headers: Sequence[TileHeader], tile_idx: np.ndarray,
                       reason: np.ndarray) -> None:
    """Raise SurveyError when no catalog object lies on any tile (``tile_idx`` (n,) all -1)."""
    if not (tile_idx >= 0).any():
        why = ", ".join(f"{n} {r}" for r, n in sorted(Counter(reason.tolist()).items()))
        raise SurveyError(f"{catalog.path}: none of its {reason.size} objects lies on any of the "
                          f"{len(headers)} tiles with every band file ({why}; e.g. tile "
                          f"{headers[0].tile} covers "
                          f"{footprint_radec(headers[0].wcs, headers[0].shape)}); check "
                          "survey.columns.ra/dec (degrees), survey.tiles and survey.bands")


def _tile_rows(catalog, index: np.ndarray, ra: np.ndarray, tile_idx: np.ndarray,
               x_pix: np.ndarray, y_pix: np.ndarray, names: np.ndarray, n_tiles: int
               ) -> tuple[np.ndarray, dict[str, dict]]:
    """Objects per tile (n_tiles,), and each tile's assignment columns, sorted by index."""
    ok = np.flatnonzero(tile_idx >= 0)
    ok = ok[np.lexsort((index[ok], tile_idx[ok]))]
    counts = np.bincount(tile_idx[ok], minlength=n_tiles)
    # FITS strings are bytes: string ids go in as their UTF-8 encoding, verbatim
    columns = {"index": index[ok], "id": id_array(catalog.ids[ok]), "ra": ra[ok],
               "dec": catalog.dec_deg[ok], "tile": names[tile_idx[ok]], "x_pix": x_pix[ok],
               "y_pix": y_pix[ok]}
    bounds = np.concatenate([[0], np.cumsum(counts)])
    tile_rows = {str(names[t]): {c: v[bounds[t]:bounds[t + 1]] for c, v in columns.items()}
                 for t in np.flatnonzero(counts)}
    return counts, tile_rows


def _shard_parts(plan: Sequence, tile_rows: Mapping[str, dict]) -> tuple[list[dict], list[dict]]:
    """Rows of each planned shard (its tiles' rows in turn) and its entry of shards.json."""
    parts, shards, start = [], [], 0
    for name, group in plan:
        rows = concat([tile_rows[t] for t in group])
        n = len(rows["index"])
        shards.append({"shard": name, "tiles": group, "n_objects": n, "rows": [start, start + n],
                       "digest": rows_digest(rows)})
        parts.append(rows)
        start += n
    return parts, shards


def build_index(config: dict, headers: Sequence[TileHeader] | None = None,
                previous: Mapping[str, dict] | None = None) -> SurveyIndex:
    """Assign, reject and shard the catalog over the tiles of ``headers`` (read when None).

    ``previous`` (:func:`previous_shards`) makes the shards stable: see the module doc.

    Raises
    ------
    SurveyError
        Bad tiles or catalog (see :mod:`skysift.survey.tiles`), no tile matching the pattern, no
        object on any tile, or (``strict``) catalog rows that cannot be cut (unusable
        coordinates, off every tile).
    """
    if headers is None:
        headers = load_headers(config)
    catalog = read_catalog(config)
    bands = list(config["survey"]["bands"])
    full = np.array([i for i, h in enumerate(headers) if list(h.bands) == bands], np.int64)
    footprints = [(headers[i].wcs, headers[i].shape) for i in full]  # tiles with every band
    ra = normalise_ra(catalog.ra_deg)
    tile_idx, x_pix, y_pix, reason = assign_objects(ra, catalog.dec_deg, footprints)
    partial = [h for h in headers if list(h.bands) != bands]
    reason = missing_band_reasons(ra, catalog.dec_deg, reason,
                                  [(h.wcs, h.shape) for h in partial],
                                  [[b for b in bands if b not in h.bands] for h in partial])
    _refuse_rejects(config, catalog, reason)
    index = np.arange(len(catalog.ids), dtype=np.int64)
    _refuse_unassigned(catalog, headers, tile_idx, reason)
    n_pinned = pin_to_previous(previous, [headers[i].tile for i in full], catalog.ids, ra,
                               catalog.dec_deg, footprints, tile_idx, x_pix,
                               y_pix) if previous else 0
    tile_idx = np.where(tile_idx >= 0, full[np.maximum(tile_idx, 0)], -1)  # into headers
    names = np.array([h.tile for h in headers], dtype=str)
    counts, tile_rows = _tile_rows(catalog, index, ra, tile_idx, x_pix, y_pix, names,
                                   len(headers))
    plan = plan_shards(names.tolist(), tile_rows, config["index"]["tiles_per_shard"], previous)
    parts, shards = _shard_parts(plan, tile_rows)
    bad = np.flatnonzero(tile_idx < 0)
    rejects = Table({"index": index[bad], "id": catalog.ids[bad],
                     "reason": reason[bad].astype(str)})
    n_kept = sum(1 for name, _ in plan if name in (previous or {}))
    return SurveyIndex(list(headers), Table(concat(parts)), rejects, counts, shards,
                       index.size, n_kept, n_pinned)


def _write_table(path: Path, table: Table, prov: dict, fmt: str, cards: dict | None = None
                 ) -> None:
    with atomic_output(path) as tmp:
        if fmt == "fits":
            hdu = fits.BinTableHDU(table)
            for key, value in {**prov, **(cards or {})}.items():
                hdu.header[f"HIERARCH {key}" if len(key) > 8 else key] = value
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
        else:
            table.meta.update(prov)
            table.write(tmp, format=fmt)


def write_shard_files(out_dir: str | Path, idx: SurveyIndex, prov: dict,
                      tiles_per_shard: int) -> int:
    """Write ``shards/{shard}.fits`` whose rows changed, delete those of gone shards; return
    how many were written. An unchanged shard's file keeps its bytes and its mtime, so
    Snakemake does not re-run the jobs that read it."""
    folder = Path(out_dir) / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    names = {s["shard"] for s in idx.shards}
    for stale in folder.glob("s*.fits"):
        if stale.stem not in names:
            stale.unlink()
    n_written = 0
    for s in idx.shards:
        path = shard_file(out_dir, s["shard"])
        if path.exists():
            try:
                if fits.getval(path, "DIGEST", ext=1) == s["digest"]:
                    continue
            except (OSError, KeyError, IndexError):
                pass  # unreadable: rewritten
        lo, hi = s["rows"]
        _write_table(path, idx.assignment[lo:hi], prov, "fits",
                     {"SHARD": s["shard"], "DIGEST": s["digest"], "TPS": tiles_per_shard})
        n_written += 1
    return n_written


def write_training_shards(out_dir: str | Path, idx: SurveyIndex, prov: dict, keep: bool
                          ) -> bool:
    """Write ``training_shards.json`` unless the previous one still holds
    (:func:`plan_training_shards`); return whether it was kept. A kept file keeps its bytes
    and its mtime, so Snakemake does not re-make the training sets that read it."""
    path = Path(out_dir) / TRAINING_SHARDS
    previous = None
    if path.exists():
        try:
            with open(path) as fh:
                previous = json.load(fh)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); written again", path, exc)
    record, kept = plan_training_shards(previous if isinstance(previous, dict) else None,
                                        idx.shards, keep)
    if kept:
        log.info("training shards: %d kept from %s (%d new shards are scored, not trained on)",
                 len(record["shards"]), path, len(idx.shards) - len(record["shards"]))
    else:
        write_json(path, {**record, "provenance": prov})
        log.info("training shards: %d shards written to %s", len(record["shards"]), path)
    return kept


def write_index(out_dir: str | Path, idx: SurveyIndex, config: dict) -> None:
    """Write tiles.json, assignment.fits, rejects.ecsv, shards.json, the changed
    shards/{shard}.fits and training_shards.json when it changes (docs/formats.md)."""
    out = Path(out_dir)
    survey = config["survey"]
    prov = provenance(config, inputs=[survey["tiles"], survey["catalog"]])
    shard_of = {t: s["shard"] for s in idx.shards for t in s["tiles"]}
    tps = config["index"]["tiles_per_shard"]
    n_written = write_shard_files(out, idx, prov, tps)
    log.info("shards: %d kept from the previous index (%d objects kept with their tile), %d "
             "files written", idx.n_kept, idx.n_pinned, n_written)
    _write_table(out / "assignment.fits", idx.assignment, prov, "fits")
    _write_table(out / "rejects.ecsv", idx.rejects, prov, "ascii.ecsv")
    write_json(out / "tiles.json", {
        "tiles": [{"tile": h.tile, "shape": list(h.shape), "pixscale_arcsec": h.pixscale_arcsec,
                   "footprint_radec": footprint_radec(h.wcs, h.shape), "n_objects": int(c),
                   "shard": shard_of.get(h.tile),
                   "missing_bands": [b for b in survey["bands"] if b not in h.bands]}
                  for h, c in zip(idx.headers, idx.counts, strict=True)],
        "bands": list(survey["bands"]), "n_catalog": idx.n_catalog,
        "n_assigned": len(idx.assignment), "n_rejected": len(idx.rejects), "provenance": prov})
    write_json(out / "shards.json", {
        "tiles_per_shard": tps, "n_shards": len(idx.shards), "n_kept": idx.n_kept,
        "n_pinned": idx.n_pinned, "shards": idx.shards, "provenance": prov})
    write_training_shards(out, idx, prov, config["index"]["keep_shards"])


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    headers = load_headers(config, args.headers)
    previous = (previous_shards(args.out_dir, config["index"]["tiles_per_shard"])
                if config["index"]["keep_shards"] else None)
    idx = build_index(config, headers, previous)
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
    log.info("survey index: %d tiles, %d shards (%d kept), %d catalog objects, %d assigned, %d "
             "rejected in %.1f s (%.0f objects/s)", len(idx.headers), len(idx.shards),
             idx.n_kept, idx.n_catalog, len(idx.assignment), len(idx.rejects), seconds,
             idx.n_catalog / max(seconds, 1e-9))
    return 0


def parser():
    """Command-line parser of ``skysift index``.

    Also that of ``python -m skysift.survey.tiles``.
    """
    p = cli.parser("Index the survey: footprints, object -> tile assignment, rejects, shards.")
    p.add_argument("--out-dir", default="results/index",
                   help="directory of tiles.json, assignment.fits, rejects.ecsv, shards.json, "
                   "shards/")
    p.add_argument("--headers", help="header summary written by skysift check (e.g. "
                   "results/tile_headers.json); without it every header is read")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the survey index (results/index); see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
