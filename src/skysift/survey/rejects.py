"""Every catalog object the run could not cut, in one table: ``results/rejects.ecsv``.

The survey index rejects objects off every tile or with unusable coordinates
(``results/index/rejects.ecsv``); cutting a shard's tiles rejects the objects of a tile band
without any valid pixel: rule ``infer`` lists them for every shard it scores
(``results/scores/{shard}.rejects.ecsv``), the cutouts step for the shards it cuts
(``results/cutouts/{shard}.rejects.ecsv``, the same objects and reasons: one tile reader, one
test). This step merges the index's table and one table per shard, with the ``stage`` that
rejected each (``index``, or ``cutouts`` for a tile cut, in memory or to a file), so that
every catalog row is in the final catalog or here, and logs the accounting.

    skysift rejects --config-json J --index-dir results/index \
        --shards results/scores/*.rejects.ecsv --out results/rejects.ecsv
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

from skysift import cli, paths
from skysift.errors import DataError
from skysift.io import atomic_output, provenance, read_table

log = logging.getLogger(__name__)
COLUMNS = ("index", "id", "reason")


def _read(path: str | Path, stage: str) -> Table:
    table = read_table(path, "rejects table")
    missing = [c for c in COLUMNS if c not in table.colnames]
    if missing:
        raise DataError(f"{path}: no columns {missing}; delete it and re-run its rule")
    table = Table({c: table[c] for c in COLUMNS})
    table["stage"] = np.full(len(table), stage, dtype="U8")
    return table


def merge_rejects(index_rejects: str | Path, cutouts_rejects: Sequence[str | Path]) -> Table:
    """One table of ``index``, ``id``, ``reason``, ``stage`` sorted by ``index``.

    Raises
    ------
    DataError
        When a catalog row is rejected twice (the inputs come from different runs).
    """
    tables = [_read(index_rejects, "index")] + [_read(p, "cutouts") for p in cutouts_rejects]
    tables = [t for t in tables if len(t)] or tables[:1]
    merged = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    merged.sort("index")
    index = np.asarray(merged["index"])
    if (index[1:] == index[:-1]).any():
        raise DataError(f"catalog rows {index[1:][index[1:] == index[:-1]][:5].tolist()} are "
                        "rejected twice; the rejects come from different index runs: re-run "
                        "the survey index and the cutouts")
    return merged


def _body(args) -> int:
    start = time.perf_counter()
    config = cli.load_config(args)
    index_dir = Path(args.index_dir)
    merged = merge_rejects(index_dir / "rejects.ecsv", args.cutouts)
    merged.meta = provenance(config, step="rejects")
    with atomic_output(args.out) as tmp:
        merged.write(tmp, format="ascii.ecsv")
    for (stage, why), n in sorted(Counter(zip(merged["stage"].tolist(),
                                              merged["reason"].tolist(), strict=True)).items()):
        log.warning("%s rejected %d objects: %s", stage, n, why)
    n_catalog = None
    tiles_json = index_dir / "tiles.json"
    if tiles_json.exists():
        n_catalog = json.loads(tiles_json.read_text()).get("n_catalog")
    log.info("rejects: %d of %s catalog objects rejected (%d by the index, %d cutting tiles); "
             "the other %s are cut, in %.2f s -> %s", len(merged), n_catalog,
             int((merged["stage"] == "index").sum()), int((merged["stage"] == "cutouts").sum()),
             "?" if n_catalog is None else n_catalog - len(merged),
             time.perf_counter() - start, args.out)
    return 0


def parser():
    """Command-line parser of ``skysift rejects``."""
    p = cli.parser("Merge the index's and the cutouts' rejects into one table.")
    p.add_argument("--index-dir", default=paths.INDEX_DIR, help="the survey index directory")
    p.add_argument("--shards", "--cutouts", dest="cutouts", nargs="*", default=[],
                   help="one rejects table per shard: results/scores/{shard}.rejects.ecsv "
                        "(rule infer) or results/cutouts/{shard}.rejects.ecsv")
    p.add_argument("--out", required=True, help="merged table, e.g. results/rejects.ecsv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Write results/rejects.ecsv; see docs/formats.md."""
    return cli.run(_body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
