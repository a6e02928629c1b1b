"""Gather every shard's scores into one catalog and rank candidates (rule ``gather``), streamed.

Writes ``results/catalog.fits`` (or per shard ``results/catalog/{shard}.fits|.parquet``:
``infer.catalog_format``), ``.csv`` (``infer.catalog_csv``) and ``results/candidates.fits``: the
shards' rows, shard after shard, each by ``index``; ids verbatim. Per model: ``prob_{task}_{model}``
(float32), P(positive | image) among objects with the task's stated prevalence
(``evaluate.prevalence``, :mod:`skysift.score.prior`; never a balanced-set probability), and
``rank_{task}_{model}`` (int64, 1 = highest logit over the whole survey, ties broken by
``index``; 0 = not ranked: a non-finite score, e.g. an object left out by ``infer.select``).
A JSON sidecar beside the CSV holds the provenance (with the models' checksums), columns and
counts; ``candidates/{task}.csv`` the ``infer.top_k`` best-ranked objects of the task's
primary model (``models[].primary``, else the first listed) with a 1-based ``rank`` first.
With ``--known-lenses`` (the rule passes it when ``survey.known_lenses`` is set: a table, or
``lenscat``, :mod:`skysift.survey.known`) the catalog and candidates also get ``known_lens``
(bool: the nearest gathered object of a known lens within ``survey.known_lenses_match_arcsec``)
and ``known_name`` (those lenses' names joined by "; ", "" if none); the provenance names the
known-lens source (lenscat: version and sha256).

Memory is bounded by one shard: the survey is never sorted in memory. Each shard's finite
(-logit, index) keys are sorted and spilled to disk; a block-wise k-way merge of those runs
(:func:`merge_runs`) hands out global ranks, written to per-shard memory maps; the catalog
is then written shard by shard (FITS as one header, then each shard's row bytes).
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from skysift import cli
from skysift.errors import DataError
from skysift.io import atomic_output, provenance, write_json
from skysift.modelspec import model_specs, primary_specs, rank_column, stage1_column
from skysift.score import prior
from skysift.score.tables import (
    FitsStream,
    atomic_directory,
    for_fits,
    header_cards,
    read_scores,
    write_candidate_table,
    write_csv,
    write_part,
)
from skysift.stamps.flags import FLAG_BITS
from skysift.survey.known import KnownLenses, NearestObjects, read_known_lenses

log = logging.getLogger(__name__)

#: Elements read from each sorted run per merge round (bounds the merge's memory).
MERGE_BLOCK = 1 << 16
MODEL_CARDS = ("MODEL", "MTASK", "MNAME", "MSHA")


def model_cards(path: str | Path) -> list[tuple[str, object]]:
    """The model cards (file, task, name, sha256 of each checkpoint) of a scores file's header."""
    header = fits.getheader(path, 1)
    return [(k, header[k]) for k in header if k.rstrip("0123456789") in MODEL_CARDS]


def merge_runs(runs: Sequence[tuple[np.ndarray, np.ndarray]], block: int = MERGE_BLOCK
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """k-way merge of sorted runs in blocks: yields (run numbers, positions in the run).

    Parameters
    ----------
    runs : list of (key (n_r,), tie (n_r,))
        Each run sorted by (key, tie) ascending (np.lexsort((tie, key))); arrays may be
        memory-mapped: at most ``block`` elements per run are read per round, plus every
        element equal to a key that fills whole blocks (a group of ties).
    block : int

    Yields
    ------
    (m,) int64 run numbers and (m,) int64 positions, the next m elements of the merged
    order of every run by (key, tie).
    """
    n = np.array([len(key) for key, _ in runs], dtype=np.int64)
    ptr = np.zeros(len(runs), dtype=np.int64)
    while (live := np.flatnonzero(ptr < n)).size:
        ends = np.minimum(ptr + block, n)
        bounded = [runs[s][0][ends[s] - 1] for s in live if ends[s] < n[s]]
        stop = ends.copy()
        if bounded:  # everything below the smallest block end lies in the blocks read
            limit = min(bounded)
            for s in live:
                stop[s] = ptr[s] + np.searchsorted(runs[s][0][ptr[s]:ends[s]], limit, "left")
            if not (stop - ptr)[live].any():  # every block starts with that key: take its ties
                for s in live:
                    stop[s] = ptr[s] + np.searchsorted(runs[s][0][ptr[s]:], limit, "right")
        take = [s for s in live if stop[s] > ptr[s]]
        keys = np.concatenate([runs[s][0][ptr[s]:stop[s]] for s in take])
        ties = np.concatenate([runs[s][1][ptr[s]:stop[s]] for s in take])
        run = np.concatenate([np.full(stop[s] - ptr[s], s, np.int64) for s in take])
        pos = np.concatenate([np.arange(ptr[s], stop[s], dtype=np.int64) for s in take])
        order = np.lexsort((ties, keys))
        yield run[order], pos[order]
        ptr = stop


def check_unique_index(indices: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise DataError when an ``index`` occurs twice (sorted (n_r,) int64 runs, one per file)."""
    last, dup = None, set()
    for run, pos in merge_runs([(ix, np.broadcast_to(np.int8(0), ix.shape)) for ix in indices]):
        values = np.empty(len(run), dtype=np.int64)
        for r in np.unique(run):
            values[run == r] = indices[r][pos[run == r]]
        dup.update(values[1:][values[1:] == values[:-1]].tolist())
        if last is not None and values[0] == last:
            dup.add(int(last))
        last = values[-1]
    if dup:
        raise DataError(f"{len(dup)} catalog indices occur in several score files (e.g. "
                        f"{sorted(dup)[:5]}); remove stale files from results/scores/ and "
                        "re-run")


class _Shards:
    """Per-shard facts of the first pass: sizes, string widths, sorted keys spilled to disk."""

    def __init__(self, paths: Sequence[str], ranked: Sequence[str], spill: Path,
                 known: NearestObjects | None = None) -> None:
        self.paths, self.ranked, self.spill = list(paths), list(ranked), spill
        self.sizes, self.colnames, self.widths, self.tiles = [], None, {}, set()
        self.cards, self.flags, self.n_selected = None, dict.fromkeys(FLAG_BITS, 0), 0
        self.nonfinite = dict.fromkeys(ranked, 0)
        indices = []
        for i, path in enumerate(self.paths):
            table = self._check(i, read_scores(path))
            index = np.asarray(table["index"], dtype=np.int64)
            if known is not None:  # the nearest object of each known lens, shard by shard
                known.update(index, np.asarray(table["ra"]), np.asarray(table["dec"]))
            np.save(self._file(i, "index", "sorted"), np.sort(index))
            indices.append(np.load(self._file(i, "index", "sorted"), mmap_mode="r"))
            for col in ranked:
                z = np.asarray(table[col], dtype=np.float32)
                rows = np.flatnonzero(np.isfinite(z))
                self.nonfinite[col] += len(z) - rows.size
                rows = rows[np.lexsort((index[rows], -z[rows]))]
                np.save(self._file(i, col, "key"), -z[rows])
                np.save(self._file(i, col, "tie"), index[rows])
                np.save(self._file(i, col, "row"), rows)
        check_unique_index(indices, self.paths)
        if known is not None:
            self.widths["known_name"] = known.name_width()

    def _file(self, i: int, col: str, what: str) -> Path:
        return self.spill / f"{i}.{col}.{what}.npy"

    def _check(self, i: int, table: Table) -> Table:
        path = self.paths[i]
        if self.colnames is None:
            self.colnames, self.cards = list(table.colnames), model_cards(path)
        elif sorted(table.colnames) != sorted(self.colnames):
            raise DataError(f"{path}: columns {table.colnames} differ from {self.paths[0]} "
                            f"{self.colnames}; re-run infer for every shard with the same models")
        elif model_cards(path) != self.cards:
            raise DataError(f"{path}: scored by other checkpoints than {self.paths[0]} (model "
                            "sha256 in the headers differ); re-run infer for every shard")
        if len(table):
            kind = "int" if table["id"].dtype.kind in "iu" else "str"
            if self.widths.setdefault("id kind", kind) != kind:
                raise DataError(f"{path}: ids are integers in some score files and text in "
                                "others; re-run infer from one catalog")
        for name in table.colnames:
            if table[name].dtype.kind == "U":
                width = max((len(v.encode()) for v in np.asarray(table[name]).tolist()),
                            default=1)
                self.widths[name] = max(self.widths.get(name, 1), width)
        self.sizes.append(len(table))
        self.tiles.update(np.asarray(table["tile"]).tolist())
        flags = np.asarray(table["flags"])
        for bit, value in FLAG_BITS.items():
            self.flags[bit] += int((flags & value != 0).sum())
        if "selected" in table.colnames:
            self.n_selected += int(np.asarray(table["selected"]).sum())
        else:
            self.n_selected += len(table)
        return table

    def ranks(self) -> None:
        """Merge the sorted runs of every ranked column; write the ranks to per-shard
        memory maps (0: not ranked)."""
        for col in self.ranked:
            out = [np.lib.format.open_memmap(self._file(i, col, "rank"), "w+", np.int64,
                                             (max(size, 1),))
                   for i, size in enumerate(self.sizes)]
            runs = [(np.load(self._file(i, col, "key"), mmap_mode="r"),
                     np.load(self._file(i, col, "tie"), mmap_mode="r"))
                    for i in range(len(self.paths))]
            rows = [np.load(self._file(i, col, "row"), mmap_mode="r")
                    for i in range(len(self.paths))]
            next_rank = 1
            for run, pos in merge_runs(runs):
                ranks = np.arange(next_rank, next_rank + len(run), dtype=np.int64)
                for s in np.unique(run):
                    mine = run == s
                    out[s][rows[s][pos[mine]]] = ranks[mine]
                next_rank += len(run)
            for memmap in out:
                memmap.flush()

    def rank_column(self, i: int, col: str) -> np.ndarray:
        return np.asarray(np.load(self._file(i, col, "rank"), mmap_mode="r"))[:self.sizes[i]]


def _csv_text(table: Table, header: bool) -> str:
    buf = io.StringIO()
    table.write(buf, format="ascii.csv")
    text = buf.getvalue()
    return text if header else text.split("\n", 1)[1]


def add_columns(table: Table, config: Mapping, ranks: Mapping[str, np.ndarray],
                known: NearestObjects | None = None) -> Table:
    """A shard's table sorted by ``index``, with ``prob_*`` for every model and ``rank_*``
    (and ``known_lens``, ``known_name`` with ``known``)."""
    order = np.argsort(np.asarray(table["index"]), kind="stable")
    table = table[order]
    for spec in model_specs(config):
        z = np.asarray(table[spec.column], dtype=np.float64)
        p = prior.probability(z, prior.prevalence_of(config, spec.task))
        table[spec.column.replace("score_", "prob_", 1)] = p.astype(np.float32)
    for col, rank in ranks.items():
        table[rank_column(col)] = np.asarray(rank)[order]
    if known is not None:
        table["known_lens"], table["known_name"] = known.columns(np.asarray(table["index"]))
    return table


def gather(config: dict, score_paths: Sequence[str | Path], out: str | Path,
           csv: str | Path | None, candidates_dir: str | Path,
           known: KnownLenses | None = None, candidates_table: str | Path | None = None
           ) -> dict:
    """Build and write the catalog (``out``: a FITS file, or with ``infer.catalog_format``
    ``*_per_shard`` a folder of one file per shard), its CSV (None: none) and JSON sidecar
    (``out`` with the suffix ``.json``), the candidate lists and, with
    ``candidates_table``, every task's candidates in one FITS table, streamed; ``known``:
    the known lenses to flag. Returns the sidecar's ``counts``.
    """
    if not score_paths:
        raise DataError("no score files given; pass --scores results/scores/*.fits")
    t0 = time.perf_counter()
    names = [str(p) for p in score_paths]
    specs = model_specs(config)
    primary = {task: spec.column for task, spec in primary_specs(config).items()}
    ranked = list(dict.fromkeys(s.column for s in specs))
    if config["infer"]["first_stage"] is not None:  # two stages: rank the first one too
        ranked += [stage1_column(t["name"]) for t in config["tasks"]]
    top_k = config["infer"]["top_k"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # sorted keys and ranks spilled to disk: ~36 bytes per object and ranked model
    with tempfile.TemporaryDirectory(prefix="gather-", dir=Path(out).parent) as spill:
        first = _first_table(names[0], ranked)
        near = (None if known is None else
                NearestObjects(known, config["survey"]["known_lenses_match_arcsec"]))
        shards = _Shards(names, ranked, Path(spill), near)
        shards.ranks()
        prov = provenance(config, n_inputs=len(names), **(known.provenance if known else {}))
        cards = header_cards(prov) + shards.cards
        candidates, columns = _write_catalog(config, shards, primary, top_k, cards, out, csv,
                                             near)
        if candidates_table is not None:
            write_candidate_table(candidates, first, cards, shards.widths, candidates_table)
    counts = {"n_rows": int(sum(shards.sizes)), "n_files": len(names),
              "n_empty_files": sum(1 for n in shards.sizes if not n),
              "n_tiles": len(shards.tiles), "n_selected": shards.n_selected,
              "flags": shards.flags, "tasks": {}}
    if near is not None:
        counts["known_lenses"] = {"n_known": int(near.index.size),
                                  "n_matched": int((near.index >= 0).sum()),
                                  "n_objects": int(np.unique(near.index[near.index >= 0]).size)}
        log.info("known lenses: %(n_matched)d of %(n_known)d matched to %(n_objects)d objects",
                 counts["known_lenses"])
    for task, col in primary.items():
        counts["tasks"][task] = _write_candidates(config, task, col, candidates[task], first,
                                                  shards.nonfinite[col], top_k, candidates_dir)
    write_json(Path(out).with_suffix(".json"), {
        "provenance": prov, "models": dict(shards.cards), "inputs": names, "counts": counts,
        "columns": columns})
    seconds = time.perf_counter() - t0
    log.info("gathered %d objects from %d score files (%d empty) in %.1f s (%.0f objects/s); "
             "%s candidates -> %s, %s, %s", counts["n_rows"], len(names),
             counts["n_empty_files"], seconds, counts["n_rows"] / max(seconds, 1e-9),
             ", ".join(f"{t}: {c['n_candidates']}" for t, c in counts["tasks"].items()),
             out, csv, candidates_dir)
    return counts


def _first_table(path: str, ranked: Sequence[str]) -> Table:
    """The first score file's table, checked to hold every ranked score column."""
    first = read_scores(path)
    missing = [c for c in ranked if c not in first.colnames]
    if missing:
        raise DataError(f"{path}: no score columns {missing}; run infer with every "
                        "model of config models (snakemake --forcerun infer gather)")
    return first


def _write_catalog(config: Mapping, shards: _Shards, primary: Mapping[str, str], top_k: int,
                   cards: Sequence[tuple[str, object]], out: str | Path, csv: str | Path | None,
                   known: NearestObjects | None) -> tuple[dict[str, list[Table]], list | None]:
    """Write the catalog (one FITS, or one FITS or Parquet file per shard: ``infer.
    catalog_format``) and the CSV (unless ``csv`` is None) shard by shard; returns the
    candidate rows and the columns."""
    names, ranked = shards.paths, shards.ranked
    fmt = config["infer"]["catalog_format"]
    candidates = {task: [] for task in primary}
    columns = None
    with ExitStack() as stack:
        if fmt == "fits":
            ffh = stack.enter_context(open(stack.enter_context(atomic_output(out)), "wb"))
            stream = None
        else:
            parts = stack.enter_context(atomic_directory(out))
        cfh = (stack.enter_context(open(stack.enter_context(atomic_output(csv)), "w",
                                        encoding="utf-8", newline=""))
               if csv is not None else None)
        for i, name in enumerate(names):
            table = add_columns(read_scores(name), config,
                                {c: shards.rank_column(i, c) for c in ranked}, known)
            if columns is None and (len(table) or i == len(names) - 1):
                columns = [{"name": c, "dtype": str(table[c].dtype)} for c in table.colnames]
                if fmt == "fits":
                    stream = FitsStream(ffh, for_fits(table[:0], shards.widths),
                                        sum(shards.sizes), cards)
                if cfh is not None:
                    cfh.write(_csv_text(table[:0], header=True))
            if fmt != "fits":  # every shard has its part, an empty shard an empty one
                write_part(parts / Path(name).stem, table if fmt == "parquet_per_shard"
                           else for_fits(table, shards.widths), fmt, cards)
            elif len(table):
                stream.append(for_fits(table, shards.widths))
            if cfh is not None and len(table):
                cfh.write(_csv_text(table, header=False))
            for task, col in primary.items():
                rank = np.asarray(table[rank_column(col)])
                candidates[task].append(table[(rank >= 1) & (rank <= top_k)])
        if fmt == "fits":
            stream.close()
    return candidates, columns


def _write_candidates(config: Mapping, task: str, col: str, parts: Sequence[Table],
                      first: Table, n_bad: int, top_k: int, candidates_dir: str | Path
                      ) -> dict:
    """Write ``candidates/{task}.csv`` (by rank, 1-based ``rank`` first); returns its counts."""
    cand = vstack(parts, metadata_conflicts="silent") if parts else first[:0]
    rank = np.asarray(cand[rank_column(col)])
    cand = cand[np.argsort(rank, kind="stable")]
    cand.add_column(np.arange(1, len(cand) + 1, dtype=np.int64), name="rank", index=0)
    write_csv(cand, Path(candidates_dir) / f"{task}.csv")
    if n_bad:
        log.warning("%s: %d objects have non-finite %s (unselected or failed) and are "
                    "never candidates", task, n_bad, col)
    return {"n_candidates": len(cand), "top_k": top_k, "ranked_by": col, "n_nonfinite": n_bad,
            "prevalence": prior.prevalence_of(config, task)}


def parser():
    """The ``skysift gather`` argument parser."""
    p = cli.parser("Gather every shard's scores into one catalog and rank candidates.")
    p.add_argument("--scores", nargs="+", required=True, help="results/scores/*.fits")
    p.add_argument("--out", required=True,
                   help="the catalog: results/catalog.fits, or with infer.catalog_format "
                        "fits_per_shard / parquet_per_shard the folder results/catalog (its "
                        ".json sidecar goes beside it: results/catalog.json)")
    p.add_argument("--csv", help="catalog CSV, results/catalog.csv (infer.catalog_csv)")
    p.add_argument("--candidates-table",
                   help="every task's candidates in one FITS table, results/candidates.fits")
    p.add_argument("--candidates-dir", required=True,
                   help="folder of {task}.csv candidate lists, results/candidates")
    p.add_argument("--known-lenses", action="store_true",
                   help="flag the known lenses of survey.known_lenses (a table, or lenscat) "
                        "in the catalog: columns known_lens, known_name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gather CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        known = read_known_lenses(config) if args.known_lenses else None
        gather(config, args.scores, args.out, args.csv, args.candidates_dir, known,
               args.candidates_table)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
