"""What the review page holds besides the top K: a random sample in bins of score and checks.

The page of a task shows the ``infer.top_k`` best objects of its primary model (source
``top``), objects drawn at random from the rest of the scored catalog in bins of score
(``random``) and a few known lenses (``check``), all shuffled, so a grader cannot tell which
is which. The random sample makes purity and completeness as functions of score estimable
(:mod:`.estimate`); the checks measure how many real lenses the graders themselves call A or
B (Euclid Q1 sent 35 % random images to its graders for the same reason).

Design (docs/review.md):

- **Bins** are quantiles of the score over every object with a finite score (the whole
  scored catalog, the top K included), by rank (ties by catalog row), so equal scores never
  straddle a bin edge differently from run to run: object of ascending rank ``p`` among
  ``n`` lies in the bin whose quantile edges hold ``(p + 0.5) / n``.
- **Strata.** The top K is a census (weight 1). Each bin's other objects (its population
  ``N_b``) are a stratum: ``n_b`` of them are drawn without replacement, uniformly, so each
  has inclusion probability ``n_b / N_b`` and weight ``N_b / n_b``; a stratum's weights sum
  to its population. At least one object is drawn from every non-empty bin (so every bin's
  population is on record, even when ``review.random_fraction`` asks for fewer objects than
  there are bins). The random draws are shared as equally as the bins' populations allow
  (what one bin cannot take goes to the others, highest score first), which over-samples the
  rare high-score bins relative to proportional allocation when the quantile edges are
  uneven (the default ``review.score_bins`` puts the top 1 % in a bin of its own).
- **Checks** are drawn uniformly from the known lenses (catalog column ``known_lens``) with a
  finite score that are neither in the top K nor in the random sample; they carry no weight
  (they are no probability sample of the survey).
- Every draw and the page's order come from one generator seeded by the run's ``seed`` and
  the task (:func:`skysift.seeds.derive_seed`), so the page is the same on every rerun.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift.errors import DataError
from skysift.io import atomic_output, read_csv_rows
from skysift.score.tables import read_gathered

#: Values of the ``source`` column of the sample file.
SOURCES = ("top", "random", "check")
#: Columns of ``results/review/{task}_sample.csv``, in order (docs/review.md).
SAMPLE_COLUMNS = ("position", "index", "id", "source", "rank", "score", "bin", "bin_lo",
                  "bin_hi", "weight", "known")


@dataclass
class Selection:
    """The page's objects in page order, as positions into the catalog's arrays.

    rows : (m,) int64 rows of the catalog arrays given to :func:`select`;
    source : (m,) str in ``SOURCES``; bin : (m,) int64 score bin (0 = lowest);
    weight : (m,) float64 sampling weight (1 for the top K, ``N_b / n_b`` for a random
    object, NaN for a check); bin_edges : (n_bins + 1,) score at each bin's lower edge and
    the highest score; bin_population : (n_bins,) objects per bin outside the top K;
    bin_top : (n_bins,) the highest score in each bin.
    """

    rows: np.ndarray
    source: np.ndarray
    bin: np.ndarray
    weight: np.ndarray
    bin_edges: np.ndarray
    bin_population: np.ndarray
    bin_top: np.ndarray


def random_count(top_k: int, fraction: float) -> int:
    """Random objects that make ``fraction`` of a page holding ``top_k`` top objects:
    ``ceil(top_k * fraction / (1 - fraction))`` (0 for fraction 0)."""
    if not 0 <= fraction < 1:
        raise DataError(f"review.random_fraction must lie in [0, 1), got {fraction}")
    return math.ceil(top_k * fraction / (1 - fraction) - 1e-9) if fraction else 0


def score_bins(scores: np.ndarray, quantiles: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bin of every finite score by rank quantile (module docstring); -1 for non-finite.

    scores : (n,) float; quantiles : increasing edges from 0 to 1, e.g. [0, 0.5, 0.9, 1].
    Returns (bin (n,) int64, edges (n_bins + 1,) float64: lowest score of each bin, NaN for
    an empty bin, then the highest score).
    """
    q = np.asarray(quantiles, float)
    if q.ndim != 1 or q.size < 2 or q[0] != 0 or q[-1] != 1 or np.any(np.diff(q) <= 0):
        raise DataError(f"review.score_bins must increase from 0 to 1, got {list(quantiles)}")
    scores = np.asarray(scores, float)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((finite, scores[finite]))]  # ascending score, ties by row
    bins = np.full(scores.shape, -1, np.int64)
    frac = (np.arange(order.size) + 0.5) / max(order.size, 1)
    bins[order] = np.searchsorted(q[1:-1], frac, side="right")
    edges = np.full(q.size, np.nan)
    for b in range(q.size - 1):
        members = scores[bins == b]
        if members.size:
            edges[b] = members.min()
    if order.size:
        edges[-1] = scores[order[-1]]
    return bins, edges


def allocate(population: np.ndarray, n: int) -> np.ndarray:
    """Share ``n`` draws among strata as equally as their populations allow (water
    filling); remainders go to the highest strata first. Returns (n_strata,) int64."""
    population = np.asarray(population, np.int64)
    take = np.zeros(population.size, np.int64)
    left = min(int(n), int(population.sum()))
    while left > 0:
        open_ = np.flatnonzero(take < population)[::-1]  # highest score first
        share, extra = divmod(left, open_.size)
        for k, b in enumerate(open_):
            add = min(share + (k < extra), population[b] - take[b])
            take[b] += add
            left -= add
    return take


def select(scores: np.ndarray, top: np.ndarray, known: np.ndarray | None,
           quantiles: Sequence[float], n_random: int, n_checks: int, seed: int) -> Selection:
    """The page's objects: the top K, a stratified random sample and checks, shuffled.

    scores : (n,) float logits of the catalog; top : (k,) rows of the top K in ``scores``;
    known : (n,) bool known lenses, or None (no checks); n_random, n_checks : how many to
    draw (fewer when the catalog has fewer); seed : the generator's seed.
    """
    scores = np.asarray(scores, float)
    top = np.asarray(top, np.int64)
    bins, edges = score_bins(scores, quantiles)
    n_bins = len(quantiles) - 1
    free = bins >= 0
    free[top] = False
    pops = [np.flatnonzero(free & (bins == b)) for b in range(n_bins)]
    population = np.array([p.size for p in pops], np.int64)
    # at least one draw per non-empty bin, so every bin's population is on record
    take = allocate(population, max(n_random, int(np.sum(population > 0))) if n_random else 0)
    rng = np.random.default_rng(seed)
    drawn = [np.sort(rng.choice(p, t, replace=False)) for p, t in zip(pops, take, strict=True)]
    rand = np.concatenate(drawn) if drawn else np.zeros(0, np.int64)
    rand_weight = np.concatenate([np.full(t, p / t if t else np.nan)
                                  for p, t in zip(population, take, strict=True)])
    checks = np.zeros(0, np.int64)
    if known is not None and n_checks > 0:
        pool = np.asarray(known, bool) & np.isfinite(scores)
        pool[top] = False
        pool[rand] = False
        pool = np.flatnonzero(pool)
        checks = np.sort(rng.choice(pool, min(n_checks, pool.size), replace=False))
    rows = np.concatenate([top, rand, checks]).astype(np.int64)
    source = np.array(["top"] * top.size + ["random"] * rand.size + ["check"] * checks.size,
                      dtype="<U6")
    weight = np.concatenate([np.ones(top.size), rand_weight, np.full(checks.size, np.nan)])
    # a page of the top K alone stays in rank order; a mixed one is shuffled
    order = rng.permutation(rows.size) if rows.size > top.size else np.arange(rows.size)
    bin_top = np.array([scores[bins == b].max() if np.any(bins == b) else np.nan
                        for b in range(n_bins)])
    return Selection(rows[order], source[order], bins[rows][order], weight[order], edges,
                     population, bin_top)


# ------------------------------------------------------------------------- files


@dataclass
class ScoredCatalog:
    """The columns of the gathered catalog the page needs, ids as text."""

    index: np.ndarray         # (n,) int64 catalog row
    ids: list[str]            # (n,) id text, as the candidate lists write it
    ra: np.ndarray            # (n,) float64 degrees
    dec: np.ndarray           # (n,) float64 degrees
    tile: list[str] | None    # (n,) tile name, when present
    score: np.ndarray         # (n,) float64 logit of the primary model
    prob: np.ndarray | None   # (n,) probability at the stated prevalence, when present
    rank: np.ndarray | None   # (n,) int64 rank of the primary model (0: not ranked)
    known: np.ndarray | None  # (n,) bool column known_lens, when present


def _text(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_scored_catalog(path, score_column: str) -> ScoredCatalog:
    """Read the catalog's index, id, ra, dec, tile, score, prob, rank and known_lens columns
    (gather: ``results/catalog.fits`` by memory map, or the folder of per-shard FITS or
    Parquet parts of ``infer.catalog_format``, part after part); DataError naming a missing
    column."""
    prob, rank = (score_column.replace("score_", p, 1) for p in ("prob_", "rank_"))
    if Path(path).is_dir():
        table = read_gathered(path, ("index", "id", "ra", "dec", "tile", score_column, prob,
                                     rank, "known_lens"))
        return _scored(table, set(table.colnames), path, score_column, prob, rank)
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, FileNotFoundError) as exc:
        raise DataError(f"{path}: catalog unreadable ({exc}); run gather "
                        "(snakemake results/catalog.fits)") from None
    with hdul:
        data = hdul[1].data
        return _scored(data, set(data.columns.names), path, score_column, prob, rank)


def _scored(data, names: set[str], path, score_column: str, prob: str, rank: str
            ) -> ScoredCatalog:
    missing = [c for c in ("index", "id", "ra", "dec", score_column) if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; re-run gather with the "
                        "current models (snakemake --forcerun gather)")

    def col(name, dtype):
        return np.array(data[name], dtype) if name in names else None
    return ScoredCatalog(
        index=col("index", np.int64), ids=_text(data["id"]), ra=col("ra", np.float64),
        dec=col("dec", np.float64),
        tile=[str(t).strip() for t in _text(data["tile"])] if "tile" in names else None,
        score=col(score_column, np.float64), prob=col(prob, np.float64),
        rank=col(rank, np.int64), known=col("known_lens", bool))


def write_sample(path, sel: Selection, cat: ScoredCatalog) -> None:
    """``results/review/{task}_sample.csv`` (``SAMPLE_COLUMNS``), one row per page object in
    page order, atomically: position on the page (the export's ``rank``), catalog index and
    id (verbatim), source, the catalog rank, score, score bin and the lowest and highest
    catalog score of that bin, weight (empty for a check), known (0/1: the catalog's
    ``known_lens``; 1 for every check, a known lens or a labelled test-split positive)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(SAMPLE_COLUMNS)
        for pos, (row, src, b, wt) in enumerate(zip(sel.rows, sel.source, sel.bin, sel.weight,
                                                    strict=True), start=1):
            w.writerow([pos, int(cat.index[row]), cat.ids[row], src,
                        "" if cat.rank is None else int(cat.rank[row]),
                        repr(float(cat.score[row])), int(b), repr(float(sel.bin_edges[b])),
                        repr(float(sel.bin_top[b])),
                        "" if not np.isfinite(wt) else repr(float(wt)),
                        int(src == "check" or bool(cat.known is not None and cat.known[row]))])


def read_sample(path) -> list[dict[str, str]]:
    """Rows of a sample file as text; DataError naming the file and the fix."""
    rows, names = read_csv_rows(path, "sample file not found; the review rule writes "
                                "results/review/{task}_sample.csv")
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    bad = [r for r in rows if r.get("source") not in SOURCES]
    if missing or bad:
        raise DataError(f"{path}: columns {missing} missing or a source not in {SOURCES}; "
                        "use the file the review rule wrote (snakemake --forcerun review)")
    return rows
