"""Score one shard straight from its tiles (rule ``infer``): only scores are written.

```
tiles of the shard ──► decode pool (infer.tiles_in_flight processes; per tile: read_tile,
        │               cut, normalise exactly as preprocess: skysift.score.decode)
        ▼
normalised stamps of tile t, in memory ──► every model, in batches of infer.batch_size
        │   (meanwhile the pool decodes the next tiles)      (× 8 D4 views with infer.tta)
        ▼
results/scores/{shard}.fits  (+ results/embeddings/{shard}.h5 with infer.embeddings)
                             (+ results/scores/{shard}.rejects.ecsv: rejected tiles' objects)
```

The objects, their order, flags and rejected tiles are those of ``cutouts`` → ``preprocess``
→ ``infer --stamps``, and the stamps are bit-identical to ``results/stamps`` (same reader,
cutter and normaliser), so the scores table is the one the stamps path writes; neither
``results/cutouts`` nor ``results/stamps`` is read or written.

Memory bound, with k = ``infer.tiles_in_flight``, B bands, a tile of P pixels holding at
most m objects of s² pixels: each of the k decode workers holds one tile and its stamps,
B·P·5 + 2·m·B·s²·4 bytes (float32 pixels and a mask byte; raw and normalised stamps); the
scoring process holds the models, the shard's per-object columns and at most k + 2 tiles'
normalised stamps, (k + 2)·m·B·s²·4 bytes: the one being scored, k decoded ahead, and one
more while a result is unpickled beside its pipe buffer. No more than k tiles are ever
submitted ahead of the one being scored. k = 0 decodes in the
scoring process, one tile at a time, with no pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from skysift.errors import DataError
from skysift.io import id_array, provenance
from skysift.learn.runtime import resolve_device, resolve_precision, torch_runtime
from skysift.modelspec import stage1_column
from skysift.score.batches import score_block, std_column
from skysift.score.decode import TileStamps, decode_tile, peak_kib
from skysift.score.scoring import (
    batch_size,
    check_compatible,
    embedding_taps,
    load_models,
    selection,
    write_embeddings,
    write_scores,
)
from skysift.score.tables import header_cards
from skysift.stamps.cut import tile_runs
from skysift.survey.shardrejects import write_shard_rejects
from skysift.survey.shards import read_assignment_rows

log = logging.getLogger(__name__)


def decoded_tiles(config: Mapping, rows: Mapping[str, np.ndarray], in_flight: int,
                  normalise: bool = True) -> Iterator[tuple[np.ndarray, TileStamps]]:
    """(rows of the tile, its decoded stamps) for each tile of ``rows``, in the cutouts order;
    ``normalise`` false: raw stamps (:func:`skysift.score.decode.decode_tile`).

    With ``in_flight`` > 0 the tiles are decoded in a pool of that many processes (started
    with ``spawn``: no copy of the scoring process, no forked threads), at most
    ``in_flight`` tiles ahead of the one the caller holds.
    """
    tiles, starts = tile_runs(dict(rows))
    jobs = []
    for t, tile in enumerate(tiles):
        sel = np.arange(starts[t], starts[t + 1])
        pos = np.column_stack([rows["x_pix"][sel], rows["y_pix"][sel]]).astype(np.float64)
        jobs.append((tile, sel, pos))
    if in_flight <= 0:
        for tile, sel, pos in jobs:
            yield sel, decode_tile(config, tile, pos, normalise)
        return
    todo = iter(jobs)
    pending: deque = deque()
    pool = ProcessPoolExecutor(min(in_flight, len(jobs)) or 1,
                               mp_context=multiprocessing.get_context("spawn"))

    def submit() -> None:
        job = next(todo, None)
        if job is not None:
            pending.append((job[1], pool.submit(decode_tile, dict(config), job[0], job[2],
                                                 normalise)))

    try:
        for _ in range(in_flight):
            submit()
        while pending:
            sel, future = pending.popleft()
            result = future.result()
            submit()
            yield sel, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stamp_attrs(config: Mapping, pixscale_arcsec: float | None) -> dict:
    """What a stamps file of this config would record, for :func:`check_compatible`."""
    return {"bands": list(config["survey"]["bands"]), "pixscale_arcsec": pixscale_arcsec,
            "stamp_size_pix": config["cutouts"]["stamp_size_pix"],
            "normalisation": dict(config["preprocess"])}


class _Columns:
    """The shard's per-object outputs, filled tile by tile (NaN: not scored)."""

    def __init__(self, n: int, columns: Sequence[str], tta: bool) -> None:
        names = list(columns) + ([std_column(c) for c in columns] if tta else [])
        self.scores = {c: np.full(n, np.nan, np.float32) for c in names}
        self.embeddings: dict[str, np.ndarray] = {}
        self.flags = np.zeros(n, np.uint8)
        self.kept = np.zeros(n, bool)
        self.n = n

    def put(self, rows: np.ndarray, scores: Mapping, embeddings: Mapping) -> None:
        for column, values in scores.items():
            self.scores[column][rows] = values
        for column, values in embeddings.items():
            if column not in self.embeddings:
                self.embeddings[column] = np.full((self.n, values.shape[1]), np.nan,
                                                  np.float32)
            self.embeddings[column][rows] = values


def _table_columns(rows: Mapping[str, np.ndarray], keep: np.ndarray, flags: np.ndarray,
                   tiles: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-object columns and tile names of the kept rows, typed as the stamps path stores
    them (ids verbatim: int64 or UTF-8 bytes; tiles as bytes as wide as the longest name)."""
    ids = np.asarray(rows["id"])[keep]
    width = max([1] + [len(t.encode()) for t in tiles])
    columns = {"index": np.asarray(rows["index"], np.int64)[keep],
               "id": ids if ids.dtype.kind == "S" else id_array(ids),
               "ra": np.asarray(rows["ra"], np.float64)[keep],
               "dec": np.asarray(rows["dec"], np.float64)[keep], "flags": flags[keep]}
    names = np.char.encode(np.asarray(rows["tile"])[keep].astype(str), "utf-8")
    return columns, names.astype(f"S{width}")


def first_member(model: torch.nn.Module) -> torch.nn.Module:
    """A committee's first member (the first stage scores with one network), else ``model``."""
    members = getattr(model, "members", None)
    return members[0] if isinstance(members, torch.nn.ModuleList) and len(members) else model


@dataclass
class _Streamed:
    """What :func:`stream_rows` returns: the filled columns, the tiles read, and timings."""

    acc: _Columns
    tiles: list
    n_rejected: int
    worker_peak: int
    decode_s: float
    wait_s: float
    rejected: list = field(default_factory=list)  # [(rows of the tile (k,), reason)]


def stream_rows(config: Mapping, rows: Mapping[str, np.ndarray], models: Mapping,
                metas: Mapping, selected: np.ndarray, taps: Mapping, tta: bool, batch,
                device: torch.device, precision: str) -> _Streamed:
    """Decode the tiles of ``rows`` (a shard's rows, or a subset of them) and score the
    ``selected`` objects with every model: the loop both scoring stages run."""
    in_flight = int(config["infer"]["tiles_in_flight"])
    acc = _Columns(len(rows["index"]), list(models), tta)
    out = _Streamed(acc, [], 0, 0, 0.0, 0.0)
    with torch_runtime(config["train"]["threads"], deterministic=False):
        stream = decoded_tiles(config, rows, in_flight)
        while True:
            t_wait = time.perf_counter()
            item = next(stream, None)
            out.wait_s += time.perf_counter() - t_wait
            if item is None:
                break
            sel, tile = item
            out.tiles.append(tile.tile)
            out.decode_s += tile.seconds
            if in_flight > 0:  # else the tile was decoded here: peak_kib says it
                out.worker_peak = max(out.worker_peak, tile.peak_kib or 0)
            if tile.rejected:
                log.warning("%s: rejecting its %d objects", tile.rejected, len(sel))
                out.n_rejected += len(sel)
                out.rejected.append((sel, tile.rejected))
                continue
            for meta in metas.values():
                check_compatible(meta, _stamp_attrs(config, tile.pixscale_arcsec), tile.path)
            acc.kept[sel], acc.flags[sel] = True, tile.flags
            mine = np.flatnonzero(selected[sel])
            x = torch.from_numpy(tile.stamps if len(mine) == len(sel) else tile.stamps[mine])
            if len(mine):
                acc.put(sel[mine], *score_block(models, x, batch, device, precision, tta, taps))
            del x, tile, item  # the next tile's stamps replace these, not join them
    return out


def load_stage_models(model_paths: Sequence[str | Path], device: torch.device,
                      stage1: bool) -> tuple[dict, dict, list]:
    """Models by column, their meta and header cards; with ``stage1`` each checkpoint's
    first committee member under ``score1_{task}`` (one checkpoint per task)."""
    models, metas, cards = load_models(model_paths, device)
    if stage1:
        tasks = [m["task"] for m in metas.values()]
        if len(set(tasks)) != len(tasks):
            raise DataError(f"first stage: one checkpoint per task, got tasks {tasks}")
        models = {stage1_column(metas[c]["task"]): first_member(m) for c, m in models.items()}
        metas = {stage1_column(m["task"]): m for m in metas.values()}
    return models, metas, cards


def score_shard(config: dict, index_dir: str | Path, shard: str,
                model_paths: Sequence[str | Path], out: str | Path,
                embeddings_out: str | Path | None = None, stage1: bool = False,
                rejects_out: str | Path | None = None) -> dict:
    """Score every object of ``shard`` from its tiles; write the scores table ``out`` (and
    the embeddings, with ``embeddings_out``). Returns counts and timings.

    ``rejects_out``: the objects of the shard's rejected tiles (a band without any valid
    pixel) with their reason, the table the cutouts step writes
    (:func:`skysift.survey.shardrejects.write_shard_rejects`), so rule ``rejects`` needs no
    cutouts of a shard that is only scored.

    ``stage1`` (``infer.first_stage``): ``model_paths`` holds one first-stage checkpoint per
    task, scored with its first committee member and without TTA into ``score1_{task}``.

    Raises DataError when a model does not match the stamps this config makes (bands, stamp
    size, normalisation, and each tile's pixel scale); SurveyError from the tile reader.
    """
    t0 = time.perf_counter()
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models, metas, cards = load_stage_models(model_paths, device, stage1)
    for meta in metas.values():
        check_compatible(meta, _stamp_attrs(config, None), f"shard {shard}")
    taps = embedding_taps(models, metas, config) if embeddings_out else {}
    batch = batch_size(config, device)
    tta = bool(config["infer"]["tta"]) and not stage1
    in_flight = int(config["infer"]["tiles_in_flight"])
    rows = read_assignment_rows(index_dir, shard=shard)
    selected = selection(config, rows["index"], rows["id"])
    got = stream_rows(config, rows, models, metas, selected, taps, tta, batch, device,
                      precision)
    acc, tiles = got.acc, got.tiles
    keep = np.flatnonzero(acc.kept)
    columns, tile_names = _table_columns(rows, keep, acc.flags, sorted(set(tiles)))
    prov = provenance(config, source="tiles", shard=shard, tile=shard, device=str(device),
                      precision=precision, tta=int(tta), n_selected=int(selected[keep].sum()),
                      select=config["infer"]["select"], batch_size=batch.size,
                      tiles_in_flight=in_flight, **({"stage": 1} if stage1 else {}))
    write_scores(out, columns, tile_names, {c: v[keep] for c, v in acc.scores.items()},
                 selected[keep], header_cards(prov) + cards)
    if embeddings_out:
        write_embeddings(embeddings_out, columns,
                         {c: v[keep] for c, v in acc.embeddings.items()}, prov)
    if rejects_out:
        write_shard_rejects(rejects_out, rows, got.rejected, config, "infer")
    seconds = time.perf_counter() - t0
    summary = {"n_objects": len(keep), "n_rejected": got.n_rejected, "n_tiles": len(tiles),
               "seconds": seconds, "decode_seconds": got.decode_s, "wait_seconds": got.wait_s,
               "peak_kib": peak_kib(), "worker_peak_kib": got.worker_peak or None}
    log.info("infer %s from tiles%s: %d tiles, %d objects (%d rejected), %d models%s in "
             "%.1f s, %.0f objects/s on %s %s; decoding %.1f s in %d processes, %.1f s waited "
             "for them; peak memory %s KiB here, %s KiB per decode worker -> %s",
             shard, " (first stage)" if stage1 else "", len(tiles), len(keep),
             got.n_rejected, len(models), " x 8 D4 orientations" if tta else "", seconds,
             len(keep) / max(seconds, 1e-9), device, precision, got.decode_s, in_flight,
             got.wait_s, summary["peak_kib"], summary["worker_peak_kib"], out)
    return summary
