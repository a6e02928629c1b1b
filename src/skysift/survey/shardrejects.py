"""A shard's rejects table: the objects of its rejected tiles and why (``index``, ``id``,
``reason``), written by the two steps that cut a shard's tiles (rule ``cutouts`` and rule
``infer``) and merged by rule ``rejects`` (:mod:`skysift.survey.rejects`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table

from skysift.io import atomic_output, provenance


def write_shard_rejects(path: str | Path, rows: dict, rejected: Sequence[tuple], config: dict,
                        step: str) -> None:
    """A shard's rejects table (``index``, ``id``, ``reason``), atomically.

    rows : the shard's assignment columns; rejected : [(rows of ``rows`` (k,), reason)], one
    entry per rejected tile; step : the writing step, recorded in the provenance (``cutouts``
    or ``infer``: both cut the same tiles with the same rule, so they reject the same objects
    for the same reason).
    """
    sel = np.concatenate([s for s, _ in rejected]) if rejected else np.zeros(0, np.int64)
    reasons = [why for s, why in rejected for _ in range(len(s))]
    ids = np.asarray(rows["id"])[sel]
    table = Table({"index": np.asarray(rows["index"], np.int64)[sel],
                   "id": np.char.decode(ids, "utf-8") if ids.dtype.kind == "S" else ids,
                   "reason": np.array(reasons, dtype=str)})
    table.meta.update(provenance(config, step=step))
    with atomic_output(path) as tmp:
        table.write(tmp, format="ascii.ecsv")
