"""``skysift STEP [args]``: one entry point for every step's CLI (``python -m skysift.STEP``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

STEPS = {
    "mock": "write the built-in mock survey",
    "check": "check tiles, bands, catalog and labels; report every problem before heavy work",
    "index": "index the survey: footprints, object -> tile assignment, rejects, shards",
    "survey": "the survey index (same as index)",
    "cutouts": "cut multi-band stamps of one shard of tiles",
    "rejects": "merge every rejected catalog object into one table",
    "preprocess": "normalise stamps into chunked HDF5 (dask)",
    "split": "assign train/val/test by a hash of the object id",
    "trainset": "build one task's training set (injections, simulations, labels)",
    "augment": "write augmented copies of a training set",
    "train": "train one model of one task (a CNN or the classical baseline)",
    "infer": "score the stamps of one shard with every model",
    "gather": "gather per-tile scores into the catalog and candidate lists",
    "evaluate": "metrics with intervals, binned completeness, purity, calibration, figures",
    "recover": "report how many known lenses (survey.known_lenses) the run recovers",
    "review": "HTML gallery and grading sheet of one task's ranked candidates",
    "grades": "purity by grade of a filled candidate grading sheet",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STEPS:
        width = max(map(len, STEPS))
        lines = [f"  {name:<{width}}  {what}" for name, what in STEPS.items()]
        print("usage: skysift STEP [options]   (skysift STEP --help)\n\nsteps:\n"
              + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"skysift.{argv[0]}")
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
