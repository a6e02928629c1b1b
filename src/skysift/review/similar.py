"""More like this (rule ``similar``, ``skysift similar``): nearest neighbours in embeddings.

From query objects (``similar.queries`` ids, or the A grades of ``similar.grades`` files) the
nearest neighbours among every object of the survey in the embeddings the scoring path
writes (``results/embeddings/{shard}.h5``, ``infer.embeddings``; docs/formats.md), found by
an approximate nearest-neighbour index (pynndescent, Dong et al. 2011). Embeddings are
L2-normalised and compared by Euclidean distance, so the order is that of cosine similarity
(d = sqrt(2 - 2 cos)). The neighbours are written as a candidate list
(``results/similar/{task}.csv``) with the columns of gather's lists, so ``skysift review``
shows and grades it like any other (rule ``similar_review``). The linear probe and the 2-D
map are in :mod:`.probe`.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skysift import cli
from skysift.errors import ConfigError, DataError
from skysift.io import atomic_output, open_h5, read_attr_json
from skysift.learn.models import CLASSICAL
from skysift.modelspec import ModelSpec, find_spec, primary_specs
from skysift.review.probe import run_map, run_probe
from skysift.review.sample import ScoredCatalog, read_scored_catalog
from skysift.seeds import derive_seed
from skysift.survey.grades import combine, combined_grade, read_grades_file

log = logging.getLogger(__name__)

#: Columns of a neighbour list besides the primary model's score column (docs/formats.md).
LIST_COLUMNS = ("rank", "index", "id", "ra", "dec", "tile", "distance", "query_index",
                "query_id", "known_lens")


@dataclass
class Embeddings:
    """Every embedded object of the survey: catalog index, id text and unit vectors."""

    index: np.ndarray   # (n,) int64 catalog row, sorted
    ids: list[str]      # (n,) id text, verbatim
    vectors: np.ndarray  # (n, width) float32, L2-normalised rows
    id_values: np.ndarray  # (n,) the ids as the embeddings files store them (int64 or bytes)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (n, width) divided by their L2 norm (a zero row stays zero)."""
    x = np.asarray(x, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0).astype(np.float32)


def read_embeddings(files: Sequence[str | Path], column: str) -> Embeddings:
    """Concatenate the ``column`` embeddings of every shard file, drop NaN rows (objects not
    scored), sort by catalog index and L2-normalise. DataError naming the file and the fix
    when a file lacks the model's dataset."""
    index, ids, raw, parts = [], [], [], []
    for path in files:
        with open_h5(path, required=("index", "id")) as fh:
            if column not in fh:
                names = read_attr_json(fh, "embeddings") if "embeddings" in fh.attrs else []
                raise DataError(f"{path}: no embeddings '{column}' (has {list(names)}); the "
                                "model must be a CNN of models and infer.embeddings true: "
                                "re-run infer (snakemake --forcerun infer)")
            x = fh[column][()]
            ok = np.isfinite(x).all(axis=1)
            index.append(fh["index"][()][ok].astype(np.int64))
            raw.append(fh["id"][()][ok])
            ids += [_text(v) for v in raw[-1]]
            parts.append(x[ok])
    if not parts or not sum(len(i) for i in index):
        raise DataError(f"no embedded objects in {len(files)} embeddings files; run infer "
                        "with infer.embeddings: true (snakemake results/catalog.fits)")
    idx = np.concatenate(index)
    order = np.argsort(idx, kind="stable")
    if np.any(np.diff(idx[order]) == 0):
        raise DataError("an object is in two embeddings files; stale files from an older "
                        "survey index: re-run infer (snakemake --forcerun infer)")
    return Embeddings(idx[order], [ids[k] for k in order], unit_rows(np.concatenate(parts))[order],
                      np.concatenate(raw)[order])


def rows_of(emb: Embeddings, index: np.ndarray) -> np.ndarray:
    """Positions in ``emb`` of catalog indices ``index``; -1 where not embedded."""
    index = np.asarray(index, np.int64)
    at = np.minimum(np.searchsorted(emb.index, index), max(len(emb.index) - 1, 0))
    return np.where(emb.index[at] == index, at, -1) if len(emb.index) else -np.ones_like(index)


def query_rows(emb: Embeddings, ids: Sequence) -> np.ndarray:
    """Positions in ``emb`` of the objects with ids ``ids`` (compared as text, verbatim);
    ConfigError naming ``similar.queries`` for an id with no embedding."""
    where = {t: k for k, t in enumerate(emb.ids)}
    missing = [str(i) for i in ids if str(i) not in where]
    if missing:
        raise ConfigError(f"similar.queries: ids {missing[:5]} ({len(missing)} in all) have no "
                          "embedding (not in the catalog, rejected or not scored); give ids of "
                          "survey.columns.id as the catalog writes them")
    return np.array([where[str(i)] for i in ids], np.int64)


def graded_rows(emb: Embeddings, grades_files: Sequence[str | Path]
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Positions in ``emb`` of the graded objects and their combined grades (A, B, C, N:
    graders combined as ``skysift grades`` does); also the count of graded objects with no
    embedding (skipped, logged). DataError when a graded index carries another id (stale)."""
    if not grades_files:
        return np.zeros(0, np.int64), np.zeros(0, "<U1"), 0
    comb = combine([read_grades_file(p) for p in grades_files])
    keys = [k for k in comb.keys if k in comb.grades]
    try:
        index = np.array([int(k[0]) for k in keys], np.int64)
    except ValueError:
        raise DataError(f"similar.grades: an index is not an integer in {list(grades_files)}; "
                        "keep the index column as the review rule wrote it") from None
    rows = rows_of(emb, index)
    for key, r in zip(keys, rows, strict=True):
        if r >= 0 and emb.ids[r] != key[1]:
            raise DataError(f"similar.grades: index {key[0]} has id {emb.ids[r]!r} in the "
                            f"embeddings, {key[1]!r} in the grades; stale grades of another "
                            "survey index: grade the current review page")
    grades = np.array([combined_grade(list(comb.grades[k].values()))[1] for k in keys], "<U1")
    ok = rows >= 0
    return rows[ok], grades[ok], int((~ok).sum())


def build_index(vectors: np.ndarray, n_neighbors: int, seed: int, n_jobs: int = 1):
    """A pynndescent index of unit ``vectors`` (n, width), Euclidean metric."""
    from pynndescent import NNDescent

    n = len(vectors)
    return NNDescent(vectors, metric="euclidean", n_neighbors=max(2, min(n_neighbors, n - 1)),
                     random_state=seed % (2**32), n_jobs=n_jobs, low_memory=True)


def neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, n_neighbors: int = 30,
               seed: int = 0, n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of each query row among ``vectors`` (unit rows, n × width),
    the queries themselves excluded. Returns (q, k) positions (-1 past the end of a small
    survey) and (q, k) Euclidean distances (inf where -1), nearest first."""
    queries = np.asarray(queries, np.int64)
    n = len(vectors)
    want = min(k + len(queries), n)
    found, dist = build_index(vectors, n_neighbors, seed, n_jobs).query(vectors[queries],
                                                                       k=want)
    out_i = np.full((len(queries), k), -1, np.int64)
    out_d = np.full((len(queries), k), np.inf)
    skip = set(queries.tolist())
    for q in range(len(queries)):
        keep = [(i, d) for i, d in zip(found[q], dist[q], strict=True)
                if i >= 0 and int(i) not in skip][:k]
        if keep:
            out_i[q, :len(keep)] = [i for i, _ in keep]
            out_d[q, :len(keep)] = [d for _, d in keep]
    return out_i, out_d


def merge_lists(found: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One list from every query's neighbours: each object once, at its smallest distance,
    with the query it is nearest to; sorted by distance (ties by position). Returns
    positions (m,), distances (m,), query number (m,)."""
    best: dict[int, tuple[float, int]] = {}
    for q in range(found.shape[0]):
        for i, d in zip(found[q], dist[q], strict=True):
            if i >= 0 and (int(i) not in best or d < best[int(i)][0]):
                best[int(i)] = (float(d), q)
    pos = np.array(sorted(best, key=lambda i: (best[i][0], i)), np.int64)
    return (pos, np.array([best[int(i)][0] for i in pos]),
            np.array([best[int(i)][1] for i in pos], np.int64))


def write_list(path: str | Path, emb: Embeddings, pos: np.ndarray, dist: np.ndarray,
               query: np.ndarray, qrows: np.ndarray, cat: ScoredCatalog, score_column: str
               ) -> None:
    """The neighbour list (``LIST_COLUMNS`` and ``score_column`` after ``tile``) atomically,
    ids verbatim; ra, dec, tile, score and known_lens from the catalog."""
    order = np.argsort(cat.index, kind="stable")
    at = order[np.minimum(np.searchsorted(cat.index[order], emb.index[pos]), len(order) - 1)]
    if len(pos) and np.any(cat.index[at] != emb.index[pos]):
        raise DataError("an embedded object is not in the catalog; stale files: re-run "
                        "gather (snakemake --forcerun gather)")
    header = list(LIST_COLUMNS)
    header.insert(header.index("tile") + 1, score_column)
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for rank, (p, d, q, r) in enumerate(zip(pos, dist, query, at, strict=True), start=1):
            qr = qrows[q]
            w.writerow([rank, int(emb.index[p]), emb.ids[p], repr(float(cat.ra[r])),
                        repr(float(cat.dec[r])), "" if cat.tile is None else cat.tile[r],
                        repr(float(cat.score[r])), f"{d:.6f}", int(emb.index[qr]),
                        emb.ids[qr], int(bool(cat.known is not None and cat.known[r]))])


def search_spec(config: Mapping, task: str) -> ModelSpec:
    """The model whose embeddings are searched (``similar.model``, else the task's primary);
    ConfigError when it is classical (no embeddings)."""
    name = config["similar"]["model"]
    spec = find_spec(config, task, name) if name else primary_specs(config)[task]
    if spec.architecture == CLASSICAL:
        raise ConfigError(f"similar.model: '{spec.name}' of task '{task}' is classical and has "
                          "no embeddings; name a CNN of models")
    return spec


def check_config(config: Mapping) -> None:
    """ConfigError naming the key when the step cannot run."""
    if not config["infer"]["embeddings"]:
        raise ConfigError("skysift similar needs the embeddings: set infer.embeddings: true "
                          "in the config (infer then re-runs and writes "
                          "results/embeddings/{shard}.h5)")
    opts = config["similar"]
    if not opts["queries"] and not opts["grades"]:
        raise ConfigError("skysift similar: no query objects; set similar.queries (catalog "
                          "ids) or similar.grades (grades files whose A grades are queries)")


def find_similar(config: Mapping, task: str, emb: Embeddings, grades: tuple, n_jobs: int = 1
                 ) -> tuple:
    """Query positions and the merged neighbour list (positions, distances, query number)."""
    opts = config["similar"]
    g_rows, g_grades, _ = grades
    qrows = np.concatenate([query_rows(emb, opts["queries"]), g_rows[g_grades == "A"]])
    qrows = np.array(list(dict.fromkeys(qrows.tolist())), np.int64)  # once each, in order
    if not len(qrows):
        raise ConfigError(f"similar.grades: no object graded A in {opts['grades']} has an "
                          "embedding; grade a few A or give similar.queries")
    found, dist = neighbours(emb.vectors, qrows, opts["k"], opts["n_neighbors"],
                             derive_seed(config["seed"], "similar", task), n_jobs)
    return (qrows, *merge_lists(found, dist))


def parser():
    """The ``skysift similar`` argument parser."""
    p = cli.parser("Nearest neighbours of query objects in the embeddings, a linear probe "
                   "and a 2-D map (config similar).")
    p.add_argument("--task", required=True, help="task name (config tasks[].name)")
    p.add_argument("--embeddings", nargs="*", default=[], help="results/embeddings/*.h5")
    p.add_argument("--catalog", required=True, help="results/catalog.fits")
    p.add_argument("--out", required=True, help="neighbour list, results/similar/{task}.csv")
    p.add_argument("--probe", default=None,
                   help="results/similar/probe_{task}.fits (with similar.probe)")
    p.add_argument("--threads", type=int, default=1, help="cores of the index build")
    p.add_argument("--map", default=None,
                   help="results/review/similar_{task}_map.png (similar.map not none)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the similar CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        check_config(config)
        t0 = time.perf_counter()
        spec = search_spec(config, args.task)
        emb = read_embeddings(args.embeddings, spec.column)
        grades = graded_rows(emb, config["similar"]["grades"])
        if grades[2]:
            log.warning("%d graded objects have no embedding (not scored): skipped", grades[2])
        primary = primary_specs(config)[args.task].column
        cat = read_scored_catalog(args.catalog, primary)
        qrows, pos, dist, query = find_similar(config, args.task, emb, grades, args.threads)
        write_list(args.out, emb, pos, dist, query, qrows, cat, primary)
        log.info("%s: %d queries, %d neighbours of %d embedded objects (%s, width %d) in "
                 "%.1f s -> %s", args.task, len(qrows), len(pos), len(emb.index), spec.column,
                 emb.vectors.shape[1], time.perf_counter() - t0, args.out)
        if args.probe:
            run_probe(config, args.task, emb, qrows, grades, args.probe)
        if args.map:
            known = (rows_of(emb, cat.index[cat.known]) if cat.known is not None
                     else np.zeros(0, np.int64))
            run_map(config, args.task, emb, qrows, grades, cat, known[known >= 0], args.map)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
