"""Concatenate every tile's scores into one catalog and rank candidates (rule ``gather``).

Writes ``results/catalog.fits`` and ``.csv`` (sorted by ``index``; ids verbatim), a JSON
sidecar (provenance, columns, counts) beside the CSV, and ``candidates/{task}.csv``: the
``infer.top_k`` highest logits of the task's primary model (``models[].primary``, else the
first model listed for the task) with a 1-based ``rank`` (ties broken by ``index``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from skysift import cli
from skysift.errors import DataError
from skysift.infer import header_cards, write_fits_table
from skysift.io import atomic_output, provenance, write_json
from skysift.modelspec import model_specs, primary_specs

log = logging.getLogger(__name__)

BASE_COLUMNS = ("index", "id", "ra", "dec", "tile", "flags")
FLAG_BITS = {"EDGE": 1, "MASKED": 2}


def read_scores(path: str | Path) -> Table:
    """Read one scores table, with text columns decoded from UTF-8 to str."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: scores file not found; run infer for it (snakemake {path})")
    try:
        table = Table.read(path, format="fits", character_as_bytes=True)
    except Exception as exc:  # astropy raises many types for broken FITS files
        raise DataError(f"{path}: unreadable scores table ({exc}); delete it and re-run infer") \
            from None
    missing = [c for c in BASE_COLUMNS if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: columns {missing} missing; delete it and re-run infer")
    for name in table.colnames:
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(np.asarray(table[name]), "utf-8")
    table.meta.clear()
    return table


def concatenate(tables: Sequence[Table], names: Sequence[str]) -> Table:
    """Stack score tables (same columns) and sort by ``index``.

    Empty tables only contribute their column names. Raises DataError when columns or id
    types differ between files, or when an index occurs twice.
    """
    ref = list(tables[0].colnames)
    for table, name in zip(tables, names, strict=True):
        if sorted(table.colnames) != sorted(ref):
            raise DataError(f"{name}: columns {table.colnames} differ from {names[0]} {ref}; "
                            "re-run infer for every tile with the same models")
    full = [(t, n) for t, n in zip(tables, names, strict=True) if len(t)]
    kinds = {n: ("int" if t["id"].dtype.kind in "iu" else "str") for t, n in full}
    if len(set(kinds.values())) > 1:
        raise DataError(f"ids are integers in some score files and text in others ({kinds}); "
                        "re-run infer from one catalog")
    if not full:
        return tables[0][ref].copy()
    table = vstack([t[ref] for t, _ in full], join_type="exact", metadata_conflicts="silent")
    table = table[np.argsort(np.asarray(table["index"]), kind="stable")]
    dup = np.asarray(table["index"])
    dup = np.unique(dup[1:][dup[1:] == dup[:-1]])
    if dup.size:
        raise DataError(f"{dup.size} catalog indices occur in several score files (e.g. "
                        f"{dup[:5].tolist()}); remove stale files from results/scores/ and re-run")
    return table


def rank_candidates(table: Table, col: str, top_k: int) -> Table:
    """The ``top_k`` rows of highest logit in column ``col``, a 1-based ``rank`` column first.

    Ties are broken by ``index`` ascending; non-finite scores are never candidates.
    """
    scores = np.asarray(table[col], dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((np.asarray(table["index"])[finite], -scores[finite]))][:top_k]
    top = table[order]
    top.add_column(np.arange(1, len(top) + 1, dtype=np.int64), name="rank", index=0)
    return top


def _for_fits(table: Table) -> Table:
    out = table.copy(copy_data=False)
    for name in out.colnames:
        if out[name].dtype.kind == "U":
            values = np.char.encode(np.asarray(out[name]), "utf-8")
            out[name] = values.astype("S1") if values.dtype.itemsize == 0 else values
    return out


def write_csv(table: Table, path: str | Path) -> None:
    """Write a table as CSV atomically (int64 ids as exact decimal digits)."""
    with atomic_output(path) as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)


def gather(config: dict, score_paths: Sequence[str | Path], out: str | Path,
           csv: str | Path, candidates_dir: str | Path) -> Table:
    """Build and write the catalog, its CSV + JSON sidecar and the candidate lists."""
    if not score_paths:
        raise DataError("no score files given; pass --scores results/scores/*.fits")
    t0 = time.perf_counter()
    names = [str(p) for p in score_paths]
    tables = [read_scores(p) for p in score_paths]
    table = concatenate(tables, names)
    primary = {task: spec.column for task, spec in primary_specs(config).items()}
    missing = [s.column for s in model_specs(config) if s.column not in table.colnames]
    if missing:
        raise DataError(f"{names[0]}: no score columns {missing}; run infer with every model "
                        "of config models (snakemake --forcerun infer gather)")
    prov = provenance(config, n_inputs=len(names))
    write_fits_table(out, _for_fits(table), header_cards(prov))
    write_csv(table, csv)
    top_k = config["infer"]["top_k"]
    counts = {"n_rows": len(table), "n_files": len(names),
              "n_empty_files": sum(1 for t in tables if not len(t)),
              "n_tiles": int(np.unique(np.asarray(table["tile"])).size),
              "flags": {bit: int((np.asarray(table["flags"]) & v != 0).sum())
                        for bit, v in FLAG_BITS.items()}, "tasks": {}}
    for task, column in primary.items():
        top = rank_candidates(table, column, top_k)
        write_csv(top, Path(candidates_dir) / f"{task}.csv")
        n_bad = int((~np.isfinite(np.asarray(table[column]))).sum())
        if n_bad:
            log.warning("%s: %d objects have non-finite %s and are never candidates",
                        task, n_bad, column)
        counts["tasks"][task] = {"n_candidates": len(top), "top_k": top_k,
                                 "ranked_by": column, "n_nonfinite": n_bad}
    write_json(Path(csv).with_suffix(".json"), {
        "provenance": prov, "inputs": names, "counts": counts,
        "columns": [{"name": c, "dtype": str(table[c].dtype)} for c in table.colnames]})
    seconds = time.perf_counter() - t0
    log.info("gathered %d objects from %d score files (%d empty) in %.1f s (%.0f objects/s); "
             "%s candidates -> %s, %s, %s", len(table), len(names), counts["n_empty_files"],
             seconds, len(table) / max(seconds, 1e-9),
             ", ".join(f"{t}: {c['n_candidates']}" for t, c in counts["tasks"].items()),
             out, csv, candidates_dir)
    return table


def parser():
    """The ``python -m skysift.gather`` argument parser."""
    p = cli.parser("Gather every tile's scores into one catalog and rank candidates.")
    p.add_argument("--scores", nargs="+", required=True, help="results/scores/*.fits")
    p.add_argument("--out", required=True, help="catalog FITS, results/catalog.fits")
    p.add_argument("--csv", required=True,
                   help="catalog CSV, results/catalog.csv (its .json sidecar goes beside it)")
    p.add_argument("--candidates-dir", required=True,
                   help="folder of {task}.csv candidate lists, results/candidates")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gather CLI; returns the exit code."""
    def body(args) -> int:
        gather(cli.load_config(args), args.scores, args.out, args.csv, args.candidates_dir)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
