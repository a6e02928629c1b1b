"""AUROC of each saved test score at matched brightness: is a model ranking more than flux?

A mock class can differ from the rest in a catalog quantity as well as in morphology (the
mock's merger primaries are r 18-21.5, field galaxies r 18-23; a tidal S/N floor favours the
brightest pairs), so a classifier can score well by brightness alone. For every
``{task}_{model}.test.npz`` of ``benchmarks/models.py`` this prints, on the same test
objects:

- the AUROC of the catalog column alone (``--column``, brighter = positive: minus the
  magnitude): what brightness alone gives;
- the model's AUROC;
- both again with the negatives reweighted so that their distribution in bins of the
  column (``--bin`` wide) is the positives' (positives in bins without negatives are left
  out and counted): the brightness-only AUROC then falls to ~0.5 and the model's is what its
  ranking owes to everything else.

Intervals: 95 % stratified bootstrap (``--n-boot`` resamples, the weights recomputed on each).

    python benchmarks/matched.py --tests bench/ --catalog data/mock/catalog.fits \\
        [--column mag_r] [--bin 0.25] [--n-boot 500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from skysift.ids import id_keys, match_ids
from skysift.io import read_table
from skysift.metrics import auroc, auroc_weighted


def matching_weights(column: np.ndarray, labels: np.ndarray,
                     width: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the negatives giving them the positives' histogram of ``column``.

    Returns (keep (n,) bool: rows in bins holding both classes, w_neg (n_neg kept,)).
    """
    bins = np.floor(column / width).astype(np.int64)
    edges, inv = np.unique(bins, return_inverse=True)
    n_pos = np.bincount(inv[labels == 1], minlength=edges.size)
    n_neg = np.bincount(inv[labels == 0], minlength=edges.size)
    keep = (n_pos > 0)[inv] & (n_neg > 0)[inv]
    ratio = n_pos / np.maximum(n_neg, 1)
    return keep, ratio[inv[keep & (labels == 0)]]


def measures(score: np.ndarray, bright: np.ndarray, labels: np.ndarray,
             column: np.ndarray, width: float) -> dict:
    keep, w = matching_weights(column, labels, width)
    return {"column_auroc": auroc(bright, labels),
            "auroc": auroc(score, labels),
            "column_auroc_matched": auroc_weighted(bright[keep], labels[keep], w),
            "auroc_matched": auroc_weighted(score[keep], labels[keep], w),
            "matched_pos_fraction": float(keep[labels == 1].mean())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", required=True, help="folder of {task}_{model}.test.npz")
    p.add_argument("--catalog", required=True, help="the survey catalog (id column 'objid' "
                   "or --id)")
    p.add_argument("--id", default="objid")
    p.add_argument("--column", default="mag_r", help="a magnitude: brighter = smaller")
    p.add_argument("--bin", type=float, default=0.25)
    p.add_argument("--n-boot", type=int, default=500)
    args = p.parse_args()
    table = read_table(args.catalog, "catalog")
    keys = id_keys(np.asarray(table[args.id]), f"{args.catalog}: column '{args.id}'")
    mags = np.asarray(table[args.column], dtype=np.float64)
    for path in sorted(Path(args.tests).glob("*.test.npz")):
        d = np.load(path)
        rows = match_ids(d["id"], keys)
        if (rows < 0).any():
            raise SystemExit(f"{path}: {(rows < 0).sum()} test ids not in {args.catalog}")
        y, z, m = d["label"].astype(np.int64), d["logit"].astype(np.float64), mags[rows]
        ok = np.isfinite(m)
        y, z, m = y[ok], z[ok], m[ok]
        point = measures(z, -m, y, m, args.bin)
        rng = np.random.default_rng(12345)
        pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        boots = []
        for _ in range(args.n_boot):
            i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
            boots.append(measures(z[i], -m[i], y[i], m[i], args.bin))
        row = {"test": path.name, "n_pos": int(pos.size), "n_neg": int(neg.size),
               "n_no_column": int((~ok).sum()), "column": args.column, "bin": args.bin}
        for k, v in point.items():
            lo, hi = np.percentile([b[k] for b in boots], [2.5, 97.5])
            row[k] = {"value": v, "lo": float(lo), "hi": float(hi)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
