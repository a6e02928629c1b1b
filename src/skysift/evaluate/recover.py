"""Known-lens recovery: how many lenses of a literature list the run finds (rule ``recover``).

``survey.known_lenses`` names a table of known lenses (RA/Dec in degrees and a name, as
SLACS, SuGOHI or the Master Lens Database list them; no survey ids), or ``lenscat``: the
catalogue shipped inside skysift (:mod:`skysift.survey.known`). Each is matched by sky
position to the nearest object of the survey catalog within
``survey.known_lenses_match_arcsec`` (RA wrap handled), then looked up in the scored catalog
(``results/catalog.fits``), in the rejects (``results/rejects.ecsv``) and among the objects
the models were trained on: positive rows of the train or validation split of the lens task's
training set (``results/train/{lens_task}.h5``: labelled positives, and real galaxies a lens
was simulated into; :func:`skysift.evaluate.inputs.trained_positives`). Every known lens gets
one status, none is dropped:

- ``training_positive``: scored, but the models were trained (train split) or selected
  (validation split) on it as a positive: counted apart, never as recovered (its rank is
  still reported);
- ``recovered``: scored, never trained on, and among the ``infer.top_k`` best by the primary
  lens model;
- ``scored-below-top-k``: scored, never trained on, ranked below the top ``infer.top_k``;
- ``rejected``: its catalog object was not cut (``reason`` says why, from the rejects);
- ``off-survey``: no catalog object within the match radius (off the footprint, or missing
  from the catalog);
- ``bad-position``: the known-lens table's RA/Dec are not usable;
- ``not-scored``: matched to a catalog object that is neither scored nor rejected (results
  of different runs mixed: re-run gather).

Ranks are over all scored objects by the logit of the lens task's primary model
(``training_set.lens_task``), 1 = best, ties by ``index``, non-finite logits last (as the
candidate lists of :mod:`skysift.score.gather`). Writes ``results/known_lenses.csv`` (one row per
known lens) and ``results/known_lenses.json`` (counts, the recovered fraction among the
matched lenses the models never trained on with a Wilson interval at ``evaluate.ci``, rank
quantiles, provenance with the known-lens source: lenscat version and sha256).

    skysift recover --config-json J --catalog results/catalog.fits \\
        --rejects results/rejects.ecsv --trainset results/train/lens.h5 \\
        --out results/known_lenses.csv --summary results/known_lenses.json

Without ``--trainset`` (every lens model imported as a checkpoint: what it was trained on is
not known here) no lens is a training positive, and the summary says so (``trained_from``
null).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from skysift import cli, paths
from skysift.errors import ConfigError, DataError
from skysift.evaluate.inputs import trained_positives
from skysift.io import provenance, read_table, require_columns, write_json
from skysift.metrics import wilson_interval
from skysift.modelspec import primary_specs
from skysift.score.tables import read_gathered, write_csv
from skysift.survey.catalog import read_catalog
from skysift.survey.known import KnownLenses, match_positions, read_known_lenses

log = logging.getLogger(__name__)

STATUSES = ("recovered", "scored-below-top-k", "training_positive", "rejected", "off-survey",
            "bad-position", "not-scored")
RANK_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


# --------------------------------------------------------------------------- pure core

def rank_scores(scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """1-based rank of each object by descending score, ties by ``index``, non-finite last.

    scores : (n,) float logits; index : (n,) int64 catalog rows. Returns (n,) int64.
    """
    scores = np.asarray(scores, np.float64)
    key = np.where(np.isfinite(scores), -scores, np.inf)
    order = np.lexsort((np.asarray(index), key))
    rank = np.empty(scores.size, np.int64)
    rank[order] = np.arange(1, scores.size + 1)
    return rank


def recover(known_ra: np.ndarray, known_dec: np.ndarray, cat_ra: np.ndarray,
            cat_dec: np.ndarray, scored_index: np.ndarray, scores: np.ndarray,
            reject_index: np.ndarray, reject_reason: np.ndarray, top_k: int,
            max_sep_arcsec: float, ranks: np.ndarray | None = None,
            trained_index: np.ndarray = ()) -> dict[str, np.ndarray]:
    """Status of each known lens in a run (see the module doc).

    Parameters
    ----------
    known_ra, known_dec : (m,) degrees of the known lenses.
    cat_ra, cat_dec : (n,) degrees of every survey catalog row (row number = ``index``).
    scored_index, scores : (s,) catalog rows scored and their primary lens logits.
    reject_index, reject_reason : (r,) catalog rows rejected and why.
    top_k : candidates per task (``infer.top_k``).
    max_sep_arcsec : match radius.
    ranks : (s,) int64, optional
        Survey-wide ranks of the scored rows as gather wrote them (``rank_*``: 1 = highest,
        0 = not ranked); computed from ``scores`` by :func:`rank_scores` when absent.
    trained_index : (t,) catalog rows the models were trained on (labelled positives of the
        lens task in the train or validation split): their lenses are ``training_positive``.

    Returns
    -------
    Columns, each (m,): ``index`` (int64, -1 unmatched), ``sep_arcsec``, ``logit`` (NaN
    unless scored), ``rank`` (int64, 0 unless scored), ``in_top_k`` (bool), ``status``,
    ``reason`` (the reject reason, else ""), ``training_positive`` (bool).
    """
    m = np.asarray(known_ra).size
    row, sep = match_positions(known_ra, known_dec, cat_ra, cat_dec, max_sep_arcsec)
    if ranks is None:
        ranks = rank_scores(scores, scored_index)
    scored_at = {int(i): j for j, i in enumerate(np.asarray(scored_index).tolist())}
    rejected = dict(zip(np.asarray(reject_index).tolist(),
                        np.asarray(reject_reason).astype(str).tolist(), strict=True))
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(known_ra) & np.isfinite(known_dec) & (np.abs(known_dec) <= 90))
    trained = set(np.asarray(trained_index, np.int64).tolist())
    out = {"index": row, "sep_arcsec": sep, "logit": np.full(m, np.nan),
           "rank": np.zeros(m, np.int64), "in_top_k": np.zeros(m, bool),
           "status": np.full(m, "off-survey", dtype="<U18"), "reason": np.full(m, "", "<U64"),
           "training_positive": np.zeros(m, bool)}
    out["status"][bad] = "bad-position"
    for i in np.flatnonzero(row >= 0):
        j = scored_at.get(int(row[i]))
        if j is not None:
            out["logit"][i], out["rank"][i] = scores[j], ranks[j]
            out["in_top_k"][i] = bool(0 < ranks[j] <= top_k and np.isfinite(scores[j]))
            out["status"][i] = "recovered" if out["in_top_k"][i] else "scored-below-top-k"
            if int(row[i]) in trained:
                out["status"][i], out["training_positive"][i] = "training_positive", True
        elif int(row[i]) in rejected:
            out["status"][i], out["reason"][i] = "rejected", rejected[int(row[i])]
        else:
            out["status"][i] = "not-scored"
    return out


def summarise(result: dict[str, np.ndarray], n_scored: int, ci: float) -> dict:
    """Counts, recovered fraction (Wilson interval at ``ci``) and rank quantiles.

    The fraction is over the known lenses matched to a catalog object (scored, rejected or
    not scored: those the survey could have found) that the models never trained on; the
    ``training_positive`` ones are counted apart (``n_training_positive``, and how many of
    them rank in the top K). ``recovered_fraction_of_all`` divides by every known lens that
    is not a training positive. Rank quantiles are over the scored lenses never trained on.
    """
    status = Counter(dict.fromkeys(STATUSES, 0))
    status.update(result["status"].tolist())
    trained = result["status"] == "training_positive"
    n_trained = int(trained.sum())
    n_known = len(result["status"])
    n_matched = int((result["index"] >= 0).sum())
    n_eligible = n_matched - n_trained
    k = status["recovered"]
    lo, hi = wilson_interval(k, n_eligible, ci)
    scored = (result["rank"] > 0) & ~trained
    ranks = result["rank"][scored]
    return {
        "n_known": n_known, "n_matched": n_matched,
        "n_scored": int(scored.sum()), "n_in_top_k": k,
        "n_below_top_k": status["scored-below-top-k"], "n_rejected": status["rejected"],
        "n_off_survey": status["off-survey"], "n_bad_position": status["bad-position"],
        "n_not_scored": status["not-scored"], "n_training_positive": n_trained,
        "n_training_positive_in_top_k": int((trained & result["in_top_k"]).sum()),
        "recovered_fraction": {"value": k / n_eligible if n_eligible else math.nan,
                               "lo": lo, "hi": hi, "ci": ci, "k": k, "n": n_eligible,
                               "interval": "Wilson score",
                               "over": "matched known lenses never trained on"},
        "recovered_fraction_of_all": (k / (n_known - n_trained) if n_known - n_trained
                                      else math.nan),
        "rank_quantiles": ({str(q): float(np.quantile(ranks, q)) for q in RANK_QUANTILES}
                           if ranks.size else {}),
        "rank_fraction_median": (float(np.median(ranks)) / n_scored if ranks.size else math.nan),
        "n_catalog_scored": n_scored,
        "rejected_reasons": dict(Counter(result["reason"][result["status"] == "rejected"]
                                         .tolist())),
    }


# --------------------------------------------------------------------------- I/O

def lens_column(config: dict) -> str:
    """Catalog column of the primary model of ``training_set.lens_task``."""
    task = config["training_set"]["lens_task"]
    if not task:
        raise ConfigError("survey.known_lenses is set but training_set.lens_task is null; set "
                          "it to the lens task, or set survey.known_lenses: null")
    specs = primary_specs(config)
    if task not in specs:
        raise ConfigError(f"training_set.lens_task '{task}' is not among tasks {list(specs)}; "
                          "fix it")
    return specs[task].column


def _no_nan(value):
    """JSON-safe copy: NaN becomes null."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _out_table(known: KnownLenses, result, cat_ids: np.ndarray) -> Table:
    matched = result["index"] >= 0
    ids = (cat_ids[np.where(matched, result["index"], 0)] if len(cat_ids)
           else np.zeros(len(known.names)))
    t = Table()
    t["name"], t["ra"], t["dec"] = known.names, known.ra_deg, known.dec_deg
    for name, values in known.extra.items():  # lenscat: type, grading, zlens, ref
        t[name] = values
    t["status"], t["reason"] = result["status"], result["reason"]
    t["id"] = MaskedColumn(ids, mask=~matched)
    t["index"] = MaskedColumn(result["index"], mask=~matched)
    t["sep_arcsec"] = MaskedColumn(result["sep_arcsec"], mask=~matched)
    scored = result["rank"] > 0
    t["logit"] = MaskedColumn(result["logit"], mask=~scored)
    t["rank"] = MaskedColumn(result["rank"], mask=~scored)
    t["in_top_k"] = result["in_top_k"]
    t["training_positive"] = result["training_positive"]
    return t


def _ranks(scored: Table, column: str) -> np.ndarray | None:
    """Gather's survey-wide ``rank_*`` of ``column`` (no second sort), if the catalog has it."""
    name = column.replace("score_", "rank_", 1)
    return np.asarray(scored[name], np.int64) if name in scored.colnames else None


def run(config: dict, catalog_path: str | Path, rejects_path: str | Path, out: str | Path,
        summary_path: str | Path, trainset_path: str | Path | None = None) -> dict:
    """Read the inputs, match, write ``out`` (CSV) and ``summary_path`` (JSON); the summary."""
    column = lens_column(config)
    known = read_known_lenses(config)
    survey_cat = read_catalog(config)
    trained = (trained_positives(trainset_path, config["training_set"]["lens_task"])
               if trainset_path else np.zeros(0, np.int64))
    if not trainset_path:
        log.warning("no --trainset: known lenses the models were trained on are not told "
                    "apart from those they found")
    if not Path(catalog_path).exists():
        raise DataError(f"{catalog_path}: catalog not found; run gather (snakemake "
                        f"{catalog_path})")
    scored = read_gathered(catalog_path, ["index", column, column.replace("score_", "rank_", 1)])
    if column not in scored.colnames:
        raise DataError(f"{catalog_path}: no column {column} (primary model of the lens task); "
                        "re-run gather with the models of this config")
    rejects = read_table(rejects_path, "rejects table")
    require_columns(rejects, {"index": "index", "reason": "reason"}, rejects_path, "rejects")
    result = recover(known.ra_deg, known.dec_deg, survey_cat.ra_deg, survey_cat.dec_deg,
                     np.asarray(scored["index"]), np.asarray(scored[column], np.float64),
                     np.asarray(rejects["index"]), np.asarray(rejects["reason"]),
                     config["infer"]["top_k"], config["survey"]["known_lenses_match_arcsec"],
                     _ranks(scored, column), trained)
    rows = _out_table(known, result, np.asarray(survey_cat.ids))
    prov = provenance(config, step="recover", **known.provenance)
    rows.meta.clear()
    write_csv(rows, out)
    summary = summarise(result, len(scored), config["evaluate"]["ci"])
    summary.update(ranked_by=column, top_k=config["infer"]["top_k"],
                   match_arcsec=config["survey"]["known_lenses_match_arcsec"],
                   known_lenses=str(config["survey"]["known_lenses"]), table=str(out),
                   n_trained_objects=int(trained.size),
                   trained_from=str(trainset_path) if trainset_path else None, provenance=prov)
    write_json(summary_path, _no_nan(summary))
    n_missing = summary["n_not_scored"]
    if n_missing:
        log.warning("%d known lenses match catalog objects that are neither scored nor "
                    "rejected; %s and %s come from different runs: re-run gather", n_missing,
                    catalog_path, rejects_path)
    return summary


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    s = run(config, args.catalog, args.rejects, args.out, args.summary, args.trainset)
    f = s["recovered_fraction"]
    log.info("known lenses: %d listed, %d matched, %d training positives (%d of them in the "
             "top K) counted apart, %d in the top %d (%.2f, %g%% interval %.2f-%.2f), %d "
             "below, %d rejected, %d off-survey, %d bad positions, median rank %s of %d, in "
             "%.1f s -> %s", s["n_known"], s["n_matched"], s["n_training_positive"],
             s["n_training_positive_in_top_k"], s["n_in_top_k"],
             s["top_k"], f["value"], 100 * f["ci"], f["lo"], f["hi"], s["n_below_top_k"],
             s["n_rejected"], s["n_off_survey"], s["n_bad_position"],
             s["rank_quantiles"].get("0.5", "-"), s["n_catalog_scored"],
             time.perf_counter() - start, args.out)
    return 0


def parser():
    """Command-line parser of ``skysift recover``."""
    p = cli.parser("Report how many known lenses (survey.known_lenses) the run recovers.")
    p.add_argument("--catalog", default=paths.CATALOG, help="the gathered catalog")
    p.add_argument("--rejects", default=paths.REJECTS, help="the merged rejects")
    p.add_argument("--trainset", default=None,
                   help="the lens task's training set (results/train/{task}.h5): its positive "
                        "train/val objects are training positives, not recoveries")
    p.add_argument("--out", default=paths.KNOWN_LENSES,
                   help="one row per known lens (CSV)")
    p.add_argument("--summary", default=paths.KNOWN_LENSES_SUMMARY,
                   help="counts, recovered fraction and rank quantiles (JSON)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``skysift recover``; returns the exit code."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
