"""``skysift STEP [args]``: one entry point for every step's CLI.

The step names are the stable interface (rules, README and users call them); the table
below says which module runs each, so moving a module renames no command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: step -> (module whose ``main(argv)`` runs it, what it does)
STEPS = {
    "mock": ("skysift.sim.mock", "write the built-in mock survey"),
    "check": ("skysift.survey.check",
              "check tiles, bands, catalog and labels; report every problem before heavy work"),
    "index": ("skysift.survey.index",
              "index the survey: footprints, object -> tile assignment, rejects, shards"),
    "survey": ("skysift.survey.index", "the survey index (same as index)"),
    "cutouts": ("skysift.stamps.cutouts", "cut multi-band stamps of one shard of tiles"),
    "rejects": ("skysift.survey.rejects", "merge every rejected catalog object into one table"),
    "preprocess": ("skysift.stamps.preprocess", "normalise stamps into chunked HDF5 (dask)"),
    "split": ("skysift.survey.split", "assign train/val/test by a hash of the object id"),
    "trainset": ("skysift.sim.trainset",
                 "build one task's training set (injections, simulations, labels)"),
    "augment": ("skysift.learn.augment", "write augmented copies of a training set"),
    "train": ("skysift.learn.train",
              "train one model of one task (a CNN or the classical baseline)"),
    "infer": ("skysift.score.infer", "score every object of one shard with every model"),
    "rescore": ("skysift.score.stages",
                "two stages: the survey's top fraction (--plan), or rescore one shard (--shard)"),
    "gather": ("skysift.score.gather",
               "gather per-tile scores into the catalog and candidate lists"),
    "evaluate": ("skysift.evaluate.evaluate",
                 "metrics with intervals, binned completeness, purity, calibration, figures"),
    "recover": ("skysift.evaluate.recover",
                "report how many known lenses (survey.known_lenses) the run recovers"),
    "review": ("skysift.review.gallery",
               "HTML gallery and grading sheet of one task's ranked candidates"),
    "grades": ("skysift.review.grades", "purity by grade of a filled candidate grading sheet"),
    "rounds": ("skysift.review.rounds",
               "compare review rounds: new lenses per 100 inspected, recall of graded lenses"),
    "review_stamps": ("skysift.review.stamps",
                      "cut the objects of every review page from the tiles, after ranking"),
    "similar": ("skysift.review.similar",
                "nearest neighbours of query objects in the embeddings, a linear probe, a map"),
}


def step_module(step: str):
    """The module that runs ``step`` (a key of :data:`STEPS`)."""
    return importlib.import_module(STEPS[step][0])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in STEPS:
        width = max(map(len, STEPS))
        lines = [f"  {name:<{width}}  {what}" for name, (_, what) in STEPS.items()]
        print("usage: skysift STEP [options]   (skysift STEP --help)\n\nsteps:\n"
              + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return step_module(argv[0]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
