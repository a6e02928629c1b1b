"""The objects of a task's review page: its ranked candidates (gather's list) and, given the
scored catalog, the random sample and checks beside them (:mod:`.sample`), drawn from the
run's seed so that rule ``review_stamps`` (:mod:`.stamps`) and rule ``review``
(:mod:`.gallery`) draw the same page."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skysift.errors import DataError
from skysift.evaluate.inputs import read_labels
from skysift.evaluate.testrows import read_test_rows
from skysift.review.sample import ScoredCatalog, Selection, random_count, select
from skysift.seeds import derive_seed

#: Values of a candidate list's optional ``known_lens`` column read as true.
TRUE_TEXT = ("1", "true", "t", "yes", "y")


@dataclass
class Candidates:
    """The ranked candidates of one task, ids kept verbatim as text."""

    rank: np.ndarray    # (n,) int64, 1-based
    index: np.ndarray   # (n,) int64 catalog row
    ids: list[str]      # (n,) the catalog id exactly as gather wrote it
    ra: np.ndarray      # (n,) float64 degrees
    dec: np.ndarray     # (n,) float64 degrees
    score: np.ndarray   # (n,) float64 logit of the primary model
    prob: np.ndarray | None  # (n,) prevalence-corrected probability, when gather wrote one
    tile: list[str] | None   # (n,) the object's tile, when present
    known: np.ndarray | None = None  # (n,) bool, column known_lens (already known), when present


def _column(rows: list[dict], name: str, path: Path, kind):
    try:
        return np.array([kind(r[name]) for r in rows])
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: column '{name}' missing or malformed ({exc}); "
                        "re-run gather (snakemake --forcerun gather)") from None


def read_candidates(path: str | Path, score_column: str, prob_columns: Sequence[str] = ()
                    ) -> Candidates:
    """Read a candidate list (gather), ids verbatim as text.

    ``prob_columns``: names of a probability column to show, the first present is used.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: candidate list not found; run gather (snakemake {path})")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        names = reader.fieldnames or []
    missing = [c for c in ("rank", "index", "id", "ra", "dec") if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; re-run gather "
                        "(snakemake --forcerun gather)")
    if score_column not in names:
        raise DataError(f"{path}: no column '{score_column}' (the task's primary model); "
                        "re-run gather with the current models (snakemake --forcerun gather)")
    prob = next((c for c in prob_columns if c in names), None)
    return Candidates(
        rank=_column(rows, "rank", path, int).astype(np.int64).reshape(-1),
        index=_column(rows, "index", path, int).astype(np.int64).reshape(-1),
        ids=[r["id"] for r in rows],
        ra=_column(rows, "ra", path, float).astype(np.float64).reshape(-1),
        dec=_column(rows, "dec", path, float).astype(np.float64).reshape(-1),
        score=_column(rows, score_column, path, float).astype(np.float64).reshape(-1),
        prob=None if prob is None else _column(rows, prob, path, float).reshape(-1),
        tile=[r["tile"] for r in rows] if "tile" in names else None,
        known=(np.array([(r["known_lens"] or "").strip().lower() in TRUE_TEXT for r in rows],
                        bool) if "known_lens" in names else None))


def labelled_test_positives(config: Mapping, task: str, catalog: str | Path,
                            split: str | Path | None) -> np.ndarray | None:
    """Catalog ``index`` (sorted) of the task's labelled positives in the test split: the
    checks of a page when the catalog flags no known lens (no training set saw them).

    None when there is no split table or ``survey.labels`` is null. ``catalog``: the one
    scores catalog file or the folder of per-shard parts; ``split``: results/split.fits.
    """
    if split is None or not config["survey"].get("labels"):
        return None
    keys, values, _ = read_labels(config)
    rows = read_test_rows(catalog, {}, split, keys)
    found = rows.label_pos >= 0
    label = np.zeros(rows.index.size)
    label[found] = values[task][rows.label_pos[found]]
    return np.sort(rows.index[label == 1])


def page_selection(config: Mapping, task: str, cands: Candidates, cat: ScoredCatalog,
                   test_positives: np.ndarray | None = None) -> Selection:
    """The page's objects (:mod:`.sample`): the candidates, ``review.random_fraction`` of
    the page drawn in bins of score and ``review.n_checks`` checks: known lenses (catalog
    column ``known_lens``, lens task), or where there are none the task's labelled
    test-split positives ``test_positives`` (:func:`labelled_test_positives`)."""
    opts = config["review"]
    order = np.argsort(cat.index, kind="stable")
    at = np.searchsorted(cat.index[order], cands.index)
    at = np.minimum(at, max(len(order) - 1, 0))
    if len(cands.index) and (not len(order) or np.any(cat.index[order][at] != cands.index)):
        raise DataError("a candidate's catalog index is not in the catalog; stale files: "
                        "re-run gather and review (snakemake --forcerun gather)")
    top = order[at] if len(cands.index) else np.zeros(0, np.int64)
    known = cat.known if task == config["training_set"]["lens_task"] else None
    if (known is None or not known.any()) and test_positives is not None:
        known = np.isin(cat.index, test_positives)
    return select(cat.score, top, known, opts["score_bins"],
                  random_count(len(top), opts["random_fraction"]), opts["n_checks"],
                  derive_seed(config["seed"], "review-sample", task))


def page_candidates(sel: Selection, cat: ScoredCatalog) -> Candidates:
    """The page's objects in page order; ``rank`` is the position on the page."""
    rows = sel.rows
    return Candidates(
        rank=np.arange(1, rows.size + 1, dtype=np.int64), index=cat.index[rows],
        ids=[cat.ids[r] for r in rows], ra=cat.ra[rows], dec=cat.dec[rows],
        score=cat.score[rows], prob=None if cat.prob is None else cat.prob[rows],
        tile=None if cat.tile is None else [cat.tile[r] for r in rows],
        known=None if cat.known is None else cat.known[rows])
