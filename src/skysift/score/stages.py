"""Two scoring stages for expensive recipes (``infer.first_stage``): the whole survey is
scored by one cheap network per task, the global top fraction again by the full recipe.

```
rule infer (per shard)        every object, first-stage model  -> results/stage1/{shard}.fits
        ▼ (all shards)                                              score1_{task}
rule rescore_plan (once)      global top infer.rescore_fraction of score1_{task}, per task:
                              the (logit, index) of the last object in it -> results/rescore.json
        ▼
rule rescore (per shard)      top-fraction objects ∪ every test-split object, cut again from
                              the tiles (skysift.score.stream), scored by every model of the
                              recipe (committee, infer.tta)          -> results/scores/{shard}.fits
        ▼
rule gather                   as with one stage; the catalog keeps both scores
```

The top fraction is global, not per shard: an object is rescored when its first-stage
logit is among the ``ceil(rescore_fraction × n)`` highest of the survey (n: objects with a
finite first-stage logit; ties broken by ``index``, as gather ranks), for any task. Finding it
reads one float32 and one int64 per object and shard, keeping only the running top
(``rescore_fraction × n`` keys per task), so the planning job's memory does not hold the
survey. Every test-split object (:mod:`skysift.survey.split`, a function of the id) is
rescored too, so the metrics on the test split are those of the full recipe.

The rescored table (``results/scores/{shard}.fits``) is the one-stage table (``score_*``:
the full recipe, NaN where it did not run) plus ``score1_{task}`` (the first-stage logit
of every object) and ``rescored`` (bool: the full recipe ran). Same objects, same full-recipe
scores as one stage: the stream code, reader, cutter and normaliser are the same.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from skysift import cli
from skysift.errors import DataError
from skysift.io import atomic_output, provenance
from skysift.learn.runtime import resolve_device, resolve_precision
from skysift.modelspec import stage1_column
from skysift.score.scoring import batch_size, check_compatible, selection, write_scores
from skysift.score.stream import (
    _stamp_attrs,
    load_stage_models,
    stream_rows,
)
from skysift.score.tables import BASE_COLUMNS, header_cards
from skysift.survey.hashsplit import SPLIT_NAMES, assign_split
from skysift.survey.shards import read_assignment_rows

log = logging.getLogger(__name__)

#: The test split's code (skysift.survey.split).
TEST = SPLIT_NAMES.index("test")


def _columns(path: str | Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Columns ``names`` of a scores table, read from its memory map."""
    if not Path(path).exists():
        raise DataError(f"{path}: first-stage scores not found; run infer for it "
                        f"(snakemake {path})")
    try:
        with fits.open(path, memmap=True) as hdul:
            data = hdul[1].data
            missing = [n for n in names if n not in data.columns.names]
            if missing:
                raise DataError(f"{path}: no columns {missing}; run infer with "
                                "infer.first_stage set (snakemake --forcerun infer)")
            return {n: np.array(data[n]) for n in names}
    except OSError as exc:
        raise DataError(f"{path}: unreadable scores table ({exc}); delete it and re-run "
                        "infer") from None


def top_fraction(score_paths: Sequence[str | Path], columns: Sequence[str], fraction: float
                 ) -> dict[str, dict]:
    """The global top ``fraction`` of each first-stage column over every shard.

    Returns
    -------
    {column: {"n_finite", "n_top", "logit", "index"}}: the top holds the ``n_top =
    ceil(fraction × n_finite)`` objects of highest logit (ties: lower ``index`` first);
    (``logit``, ``index``) is its last object (None when ``n_top`` is 0). Memory: the
    running top, ``n_top`` keys per column, and one shard's column.
    """
    n_finite = dict.fromkeys(columns, 0)
    for path in score_paths:
        for col, z in _columns(path, columns).items():
            n_finite[col] += int(np.isfinite(z).sum())
    out = {}
    for col in columns:
        n_top = math.ceil(fraction * n_finite[col]) if n_finite[col] else 0
        key, tie = np.zeros(0, np.float32), np.zeros(0, np.int64)
        for path in score_paths:
            got = _columns(path, [col, "index"])
            z, index = got[col].astype(np.float32), got["index"].astype(np.int64)
            ok = np.isfinite(z)
            key, tie = np.concatenate([key, -z[ok]]), np.concatenate([tie, index[ok]])
            order = np.lexsort((tie, key))[:n_top]
            key, tie = key[order], tie[order]
        out[col] = {"n_finite": n_finite[col], "n_top": n_top,
                    "logit": float(-key[-1]) if n_top else None,
                    "index": int(tie[-1]) if n_top else None}
    return out


def in_top(z: np.ndarray, index: np.ndarray, entry: Mapping) -> np.ndarray:
    """(n,) bool: the objects (logits ``z``, catalog ``index``) in a top of
    :func:`top_fraction` (``entry``)."""
    if not entry["n_top"]:
        return np.zeros(len(z), bool)
    z = np.asarray(z, np.float32)
    last = np.float32(entry["logit"])
    return np.isfinite(z) & ((z > last) | ((z == last) & (index <= entry["index"])))


def write_plan(config: Mapping, score_paths: Sequence[str | Path], out: str | Path) -> dict:
    """Write ``results/rescore.json``: the top of every task's first-stage column."""
    tasks = [t["name"] for t in config["tasks"]]
    fraction = float(config["infer"]["rescore_fraction"])
    tops = top_fraction(score_paths, [stage1_column(t) for t in tasks], fraction)
    record = {"provenance": provenance(config, n_inputs=len(score_paths)),
              "rescore_fraction": fraction, "tops": tops}
    with atomic_output(out) as tmp, open(tmp, "w") as fh:
        json.dump(record, fh, indent=1)
    for col, top in tops.items():
        log.info("%s: top %g of %d objects = %d, down to logit %s (index %s)", col, fraction,
                 top["n_finite"], top["n_top"], top["logit"], top["index"])
    return record


def _read_plan(path: str | Path) -> dict:
    try:
        with open(path) as fh:
            return json.load(fh)["tops"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable rescore plan ({exc}); delete it and re-run "
                        "rule rescore_plan") from None


def rescore_wanted(config: Mapping, rows: Mapping[str, np.ndarray],
                   stage1: Mapping[str, np.ndarray], tops: Mapping[str, Mapping]) -> np.ndarray:
    """(n,) bool over the shard's ``rows``: in the top of any task, or in the test split.

    ``stage1``: the first-stage table's ``index`` and ``score1_*`` columns (rows of
    rejected tiles are absent from it and never wanted).
    """
    top = np.zeros(len(stage1["index"]), bool)
    for col, entry in tops.items():
        top |= in_top(stage1[col], stage1["index"], entry)
    split = config["split"]
    test = assign_split(rows["id"], split["fractions"], split["salt"]) == TEST
    scored = np.isin(rows["index"], stage1["index"])
    return scored & (np.isin(rows["index"], stage1["index"][top]) | test)


def rescore_shard(config: dict, index_dir: str | Path, shard: str,
                  model_paths: Sequence[str | Path], stage1_path: str | Path,
                  plan_path: str | Path, out: str | Path) -> dict:
    """Score the wanted objects of ``shard`` (:func:`rescore_wanted`) with every model, cut
    again from the tiles; write the shard's scores table with both stages. Returns counts."""
    t0 = time.perf_counter()
    tops = _read_plan(plan_path)
    first = _columns(stage1_path, [*BASE_COLUMNS, *tops, "selected"])
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    models, metas, cards = load_stage_models(model_paths, device, stage1=False)
    for meta in metas.values():
        check_compatible(meta, _stamp_attrs(config, None), f"shard {shard}")
    batch, tta = batch_size(config, device), bool(config["infer"]["tta"])
    rows = read_assignment_rows(index_dir, shard=shard)
    wanted = rescore_wanted(config, rows, first, tops)
    sub = {c: v[wanted] for c, v in rows.items()}
    selected = selection(config, sub["index"], sub["id"])
    got = stream_rows(config, sub, models, metas, selected, {}, tta, batch, device, precision)
    # the stage-1 table's rows (sorted by the stream as the rows are) <- the subset's
    order = np.argsort(first["index"], kind="stable")
    pos = order[np.searchsorted(first["index"][order], sub["index"])]
    n = len(first["index"])
    scores = {c: np.full(n, np.nan, np.float32) for c in got.acc.scores}
    for c, v in got.acc.scores.items():
        scores[c][pos] = v
    rescored = np.zeros(n, bool)
    rescored[pos] = got.acc.kept & selected
    scores.update({c: first[c] for c in tops})
    scores["rescored"] = rescored
    prov = provenance(config, source="tiles", shard=shard, tile=shard, device=str(device),
                      precision=precision, tta=int(tta), stage=2,
                      first_stage=str(config["infer"]["first_stage"]),
                      rescore_fraction=float(config["infer"]["rescore_fraction"]),
                      n_rescored=int(rescored.sum()), select=config["infer"]["select"])
    base = {c: first[c] for c in ("index", "id", "ra", "dec", "flags")}
    write_scores(out, base, first["tile"], scores, first["selected"],
                 header_cards(prov) + cards)
    seconds = time.perf_counter() - t0
    log.info("rescore %s: %d of %d objects by the full recipe (%d models%s: top %g of the "
             "survey by the first stage, and the test split) in %.1f s -> %s", shard,
             rescored.sum(), n, len(models), " x 8 D4 orientations" if tta else "",
             config["infer"]["rescore_fraction"], seconds, out)
    return {"n_objects": n, "n_rescored": int(rescored.sum()), "n_tiles": len(got.tiles),
            "seconds": seconds}


def parser():
    """The ``skysift rescore`` argument parser."""
    p = cli.parser("Two-stage scoring (infer.first_stage): find the survey's top fraction by "
                   "the first stage (--plan), or rescore one shard's top fraction and test "
                   "objects with the full recipe (--shard).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--plan", action="store_true",
                       help="write the global top fraction of every task (results/rescore.json)")
    which.add_argument("--shard", help="rescore this shard, cut again from its tiles")
    p.add_argument("--scores", nargs="+", required=True,
                   help="first-stage scores, results/stage1/*.fits (with --shard: its own)")
    p.add_argument("--rescore-plan", help="with --shard: results/rescore.json")
    p.add_argument("--index-dir", default="results/index", help="with --shard: the index")
    p.add_argument("--models", nargs="+", help="with --shard: every checkpoint of the recipe")
    p.add_argument("--out", required=True,
                   help="results/rescore.json (--plan) or results/scores/{shard}.fits")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rescore CLI; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        if args.plan:
            write_plan(config, args.scores, args.out)
            return 0
        if not args.models or not args.rescore_plan or len(args.scores) != 1:
            raise DataError("rescore --shard needs --models, --rescore-plan and the shard's "
                            "one first-stage --scores file")
        rescore_shard(config, args.index_dir, args.shard, args.models, args.scores[0],
                      args.rescore_plan, args.out)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
