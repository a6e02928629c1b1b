"""Shards of tiles: names, stable planning, and each shard's own assignment file.

A shard is the unit of work of every per-object step. Its rows (``ASSIGNMENT_COLUMNS``)
are in ``results/index/assignment.fits`` and in ``results/index/shards/{shard}.fits``, which
the index rewrites only when they change (:func:`rows_digest`), so that jobs reading an
unchanged shard are not re-run. :func:`plan_shards` keeps the shards of a previous index
run (:func:`previous_shards`) whose tiles hold the same rows; :func:`plan_training_shards`
keeps the record of the shards the training sets draw from (``training_shards.json``), so
that adding tiles re-makes no training set and retrains no model. Layouts in docs/formats.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.errors import DataError
from skysift.io import id_array

log = logging.getLogger(__name__)

ASSIGNMENT_COLUMNS = ("index", "id", "ra", "dec", "tile", "x_pix", "y_pix")
#: The shards the training sets draw from, in the index directory (:func:`plan_training_shards`).
TRAINING_SHARDS = "training_shards.json"


def shard_name(i: int) -> str:
    """Name of shard number ``i``: ``s0000``, ``s0001``, ... ``s9999``, ``s10000``: fixed
    for a shard whatever the number of shards, so adding shards renames none."""
    return f"s{i:04d}"


def shard_number(name: str) -> int:
    """Inverse of :func:`shard_name`."""
    return int(name[1:])


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
    ``[start, stop)`` of its objects in an assignment table sorted by tile, index.
    """
    if tiles_per_shard < 1:
        raise ValueError(f"tiles_per_shard must be positive, got {tiles_per_shard}")
    starts = np.concatenate([[0], np.cumsum(n_objects)]).astype(np.int64)
    used = [i for i, n in enumerate(n_objects) if n > 0]
    groups = [used[k:k + tiles_per_shard] for k in range(0, len(used), tiles_per_shard)]
    return [{"shard": shard_name(i), "tiles": [tiles[t] for t in group],
             "n_objects": int(sum(n_objects[t] for t in group)),
             "rows": [int(starts[group[0]]), int(starts[group[-1] + 1])]}
            for i, group in enumerate(groups)]


def rows_digest(rows: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a shard's assignment rows (index, id, tile, x_pix, y_pix), in order."""
    h = hashlib.sha256()
    ids = np.asarray(rows["id"])
    ids = ids if ids.dtype.kind == "S" else id_array(ids)
    h.update(np.asarray(rows["index"], "<i8").tobytes())
    h.update(ids.astype("<i8").tobytes() if ids.dtype.kind in "iu" else b"\0".join(ids.tolist()))
    h.update("\0".join(np.asarray(rows["tile"]).astype(str).tolist()).encode())
    for key in ("x_pix", "y_pix"):
        h.update(np.asarray(rows[key], "<f8").tobytes())
    return h.hexdigest()


def shard_file(index_dir: str | Path, shard: str) -> Path:
    return Path(index_dir) / "shards" / f"{shard}.fits"


def read_rows(path: Path, lo: int | None = None, hi: int | None = None
                    ) -> tuple[dict[str, np.ndarray], fits.Header]:
    """Assignment columns of rows [lo, hi) of a FITS table (memory-mapped) and its header."""
    try:
        with fits.open(path, memmap=True) as hdul:
            data, header = hdul[1].data, hdul[1].header.copy()
            names = data.columns.names if data is not None else []
            missing = [c for c in ASSIGNMENT_COLUMNS if c not in names]
            if missing:
                raise DataError(f"{path}: missing columns {missing}; delete it and re-run "
                                "the survey index")
            out = {c: np.array(data[c][lo:hi]) for c in ASSIGNMENT_COLUMNS}
    except DataError:
        raise
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise DataError(f"{path}: cannot read the assignment ({exc}); delete it and re-run "
                        "the survey index") from None
    out["tile"] = np.char.strip(np.char.decode(np.asarray(out["tile"], "S"), "utf-8"))
    return out, header


def previous_shards(index_dir: str | Path, tiles_per_shard: int) -> dict[str, dict]:
    """{shard: {"rows", "digest"}} of the ``shards/*.fits`` a previous index run left in
    ``index_dir``, when it grouped ``tiles_per_shard`` tiles per shard ({} otherwise)."""
    out = {}
    for path in sorted((Path(index_dir) / "shards").glob("s*.fits")):
        try:
            rows, header = read_rows(path)
        except DataError as exc:
            log.warning("%s; the shard is rebuilt", exc)
            continue
        if header.get("TPS") != tiles_per_shard or header.get("DIGEST") != rows_digest(rows):
            log.info("%s: other tiles_per_shard or contents; shards are rebuilt", path)
            return {}
        out[path.stem] = {"rows": rows, "digest": header["DIGEST"]}
    return out


def plan_shards(tiles: Sequence[str], tile_rows: Mapping[str, dict[str, np.ndarray]],
                tiles_per_shard: int, previous: Mapping[str, dict] | None = None
                ) -> list[tuple[str, list[str]]]:
    """Shards as (name, tiles), in name order: previous shards kept, then new ones.

    Parameters
    ----------
    tiles : every tile name, sorted.
    tile_rows : per tile holding objects, its assignment rows sorted by index.
    tiles_per_shard : at most this many tiles per new shard.
    previous : {shard: {"rows", "digest"}} of a previous run (:func:`previous_shards`).

    A previous shard is kept, name and tiles, when its tiles hold exactly the rows it had
    (same digest). The other tiles holding objects, in name order, make new shards of
    ``tiles_per_shard``, numbered after the highest previous shard. Without ``previous``
    this is :func:`make_shards`.
    """
    if tiles_per_shard < 1:
        raise ValueError(f"tiles_per_shard must be positive, got {tiles_per_shard}")
    kept, taken = [], set()
    for name, entry in sorted((previous or {}).items(), key=lambda kv: shard_number(kv[0])):
        group = list(dict.fromkeys(entry["rows"]["tile"].tolist()))
        if all(t in tile_rows for t in group) and \
                rows_digest(concat([tile_rows[t] for t in group])) == entry["digest"]:
            kept.append((name, group))
            taken.update(group)
    first = max((shard_number(n) for n in previous or {}), default=-1) + 1
    free = [t for t in tiles if t in tile_rows and t not in taken]
    new = [(shard_name(first + k), free[i:i + tiles_per_shard])
           for k, i in enumerate(range(0, len(free), tiles_per_shard))]
    return kept + new


def plan_training_shards(record: Mapping | None, shards: Sequence[Mapping], keep: bool = True
                         ) -> tuple[dict, bool]:
    """The shards the training sets draw from (``training_shards.json``), and whether
    ``record``, that of a previous index run, still holds.

    Parameters
    ----------
    record : ``{"shards": [name, ...], "digests": {name: digest}, ...}`` of a previous run,
        or None (none, or unreadable).
    shards : this run's shards (``shards.json`` entries with ``shard``, ``digest``,
        ``n_objects``).
    keep : ``index.keep_shards``: keep ``record`` while every shard it lists still exists
        with the same digest (tiles added since only make new shards); False: ``record``
        holds only when it lists exactly this run's shards.

    Returns
    -------
    (record, kept): ``record`` itself when kept, else a new one listing every shard of this
    run; a kept record is not rewritten, so the training sets that read it are not re-made.
    """
    now = {s["shard"]: s["digest"] for s in shards}
    if record is not None:
        old = dict(record.get("digests") or {})
        listed = list(record.get("shards") or [])
        same = (bool(listed) and sorted(listed) == sorted(old)
                and all(now.get(name) == digest for name, digest in old.items()))
        if same and (keep or set(old) == set(now)):
            return dict(record), True
    names = sorted(now, key=shard_number)
    return {"shards": names, "digests": {n: now[n] for n in names},
            "n_objects": int(sum(s["n_objects"] for s in shards))}, False


def concat(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def load_shards(index_dir: str | Path) -> dict:
    """``shards.json`` of an index directory, as a dict."""
    path = Path(index_dir) / "shards.json"
    if not path.exists():
        raise DataError(f"{path}: not found; run the survey index first (snakemake {path})")
    with open(path) as fh:
        return json.load(fh)


def read_assignment_rows(index_dir: str | Path, shard: str | None = None,
                         tile: str | None = None) -> dict[str, np.ndarray]:
    """Assignment columns of one shard (``shards/{shard}.fits``) or one tile (a scan).

    The tables are memory-mapped and only the selected rows are copied, so every job can
    read a survey-sized assignment.
    """
    path = Path(index_dir) / "assignment.fits"
    if shard is None:
        if not path.exists():
            raise DataError(f"{path}: assignment not found; run the survey index first "
                            f"(snakemake {path})")
        rows, _ = read_rows(path)
        keep = np.flatnonzero(rows["tile"] == tile)
        return {c: v[keep] for c, v in rows.items()}
    if not (Path(index_dir) / "shards.json").exists() and not path.exists():
        raise DataError(f"{path}: assignment not found; run the survey index first "
                        f"(snakemake {path})")
    entry = {s["shard"]: s for s in load_shards(index_dir)["shards"]}.get(shard)
    if entry is None:
        raise DataError(f"{Path(index_dir) / 'shards.json'}: no shard '{shard}'; the index "
                        "changed since the job was planned: re-run snakemake")
    own = shard_file(index_dir, shard)
    if own.exists():
        rows, header = read_rows(own)
        if header.get("DIGEST") != entry.get("digest"):
            raise DataError(f"{own}: does not match {Path(index_dir) / 'shards.json'}; re-run "
                            "the survey index")
    else:  # an index written before shards/ existed: the shard's slice of the assignment
        if not path.exists():
            raise DataError(f"{path}: assignment not found; run the survey index first "
                            f"(snakemake {path})")
        rows, _ = read_rows(path, *entry["rows"])
    if not set(rows["tile"].tolist()) <= set(entry["tiles"]):
        raise DataError(f"{own}: rows do not belong to shard '{shard}'; delete {index_dir} and "
                        "re-run the survey index")
    return rows
