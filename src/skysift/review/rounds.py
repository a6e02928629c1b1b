"""Review rounds compared (``skysift rounds``): what each round of grading found.

A round is the grades given to one run's candidates (``review.grades[].round``, or one
``--round`` per round). Graders of a round are combined as ``skysift grades`` combines them
(mean grade, :func:`skysift.survey.grades.combined_grade`). Per round:

- ``n_inspected``: objects graded in the round that no earlier round graded (an object
  graded again is not inspected anew: ``n_regraded``, counted apart, never twice);
- ``n_new_positive``: of those, the ones graded A or B; ``new_per_100`` =
  100 × n_new_positive / n_inspected, the discovery rate of the round's inspection;

and per run given by its candidate list (``--candidates``, one per round, in order): the
recall in its top K of the graded positives (objects whose latest grade is A or B, over every
round): how many of the lenses people confirmed that run's ranking puts in its top K. A run
trained on some of them (grades of the train and validation splits become labels) ranks
those from memory, so new_per_100 is the fair comparison of rounds.

    skysift rounds --config C --task lens --out rounds.json \\
        [--round r1_ann.csv r1_bob.csv --round r2_ann.csv] [--candidates r1.csv r2.csv]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from skysift import cli
from skysift.errors import DataError
from skysift.io import provenance, read_csv_rows, write_json
from skysift.survey.gradelabels import GRADE_LABEL, round_grades
from skysift.survey.labels import find_task

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (catalog index, id) as text


def is_positive(grade: str) -> bool:
    """A and B count as lenses found (the grades that become training positives)."""
    return GRADE_LABEL.get(grade) == 1


def compare_rounds(rounds: Mapping[int, Mapping[Key, str]]) -> list[dict]:
    """Per round (in order): graded, inspected anew, regraded, new positives, new per 100.

    rounds : {round: {object key: combined grade in that round}}.
    """
    seen: set[Key] = set()
    out = []
    for rnd in sorted(rounds):
        grades = rounds[rnd]
        new = [k for k in grades if k not in seen]
        n_pos = sum(is_positive(grades[k]) for k in new)
        out.append({"round": rnd, "n_graded": len(grades), "n_inspected": len(new),
                    "n_regraded": len(grades) - len(new), "n_new_positive": n_pos,
                    "new_by_grade": {g: sum(grades[k] == g for k in new) for g in "ABCN"},
                    "new_per_100": 100.0 * n_pos / len(new) if new else None})
        seen.update(grades)
    return out


def graded_positives(rounds: Mapping[int, Mapping[Key, str]]) -> set[Key]:
    """Objects whose latest grade (over the rounds, in order) is A or B."""
    latest: dict[Key, str] = {}
    for rnd in sorted(rounds):
        latest.update(rounds[rnd])
    return {k for k, g in latest.items() if is_positive(g)}


def read_ranking(path: str | Path) -> list[Key]:
    """(index, id) text of a candidate list (``results/candidates/{task}.csv``) in rank order."""
    rows, names = read_csv_rows(path, "candidate list not found; pass the "
                                "candidates/{task}.csv of each round's run, kept before the "
                                "next run rewrote it", encoding="utf-8-sig")
    missing = [c for c in ("index", "id") if c not in names]
    if missing:
        raise DataError(f"{path}: columns {missing} missing (found {names}); pass the "
                        "candidate list the gather step wrote")
    if "rank" in names:
        rows.sort(key=lambda r: float(r["rank"]))
    return [(r["index"].strip(), r["id"]) for r in rows]


def recall_top_k(ranking: Sequence[Key], positives: set[Key], top_k: int) -> dict:
    """How many of ``positives`` the first ``top_k`` of ``ranking`` hold."""
    found = len(positives & set(ranking[:top_k]))
    return {"top_k": top_k, "n_positives": len(positives), "n_in_top_k": found,
            "recall": found / len(positives) if positives else None}


def rounds_report(config: Mapping, task: str, candidates: Sequence[str | Path] = (),
                  top_k: int | None = None) -> dict:
    """The rounds of ``review.grades`` of ``task`` compared, and the recall of each run."""
    rounds = {rnd: {k: g for k, (g, _) in grades.items()}
              for rnd, grades in round_grades(config, task).items()}
    if not rounds:
        raise DataError(f"no grades of task '{task}': list the grades files in review.grades "
                        "(with their round) or pass --round FILE... once per round")
    k = int(top_k if top_k is not None else config["infer"]["top_k"])
    positives = graded_positives(rounds)
    runs = [dict(run=i + 1, candidates=str(p), **recall_top_k(read_ranking(p), positives, k))
            for i, p in enumerate(candidates)]
    files = {rnd: sorted({e["file"] for e in config["review"]["grades"]
                          if int(e["round"]) == rnd and e["task"] in (None, task)})
             for rnd in rounds}
    per_round = compare_rounds(rounds)
    for r in per_round:
        r["files"] = files[r["round"]]
    return {"task": task, "positive_grades": sorted(g for g in GRADE_LABEL if is_positive(g)),
            "rounds": per_round, "n_graded_positives": len(positives), "runs": runs}


def parser():
    """The ``skysift rounds`` argument parser."""
    p = cli.parser("Compare review rounds: new lenses per 100 images inspected (objects "
                   "graded in an earlier round not counted again) and each run's recall of "
                   "the graded positives in its top K.")
    p.add_argument("--task", help="task name (default: the only task of the config)")
    p.add_argument("--round", action="append", nargs="+", default=[], metavar="FILE",
                   dest="rounds", help="the grades files of one round (page exports, filled "
                   "sheets), once per round in order; default: review.grades of the config")
    p.add_argument("--candidates", nargs="+", default=[], metavar="CSV",
                   help="each round's candidate list (results/candidates/{task}.csv of its "
                        "run), in round order: recall of the graded positives in its top K")
    p.add_argument("--top-k", type=int, help="K of the recall (default: infer.top_k)")
    p.add_argument("--out", required=True, help="JSON report to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``skysift rounds``; returns the exit code."""
    def body(args) -> int:
        config = cli.load_config(args)
        task = args.task or (config["tasks"][0]["name"] if len(config["tasks"]) == 1 else None)
        if task is None:
            raise DataError("several tasks are configured: name one with --task")
        find_task(config, task)
        if args.rounds:
            config["review"]["grades"] = [{"file": f, "task": task, "round": i + 1}
                                          for i, files in enumerate(args.rounds) for f in files]
        report = rounds_report(config, task, args.candidates, args.top_k)
        report["provenance"] = provenance(config, step="rounds", task=task)
        write_json(args.out, report)
        for r in report["rounds"]:
            log.info("round %d: %d graded, %d inspected anew (%d graded before), %d new "
                     "positives (A/B): %s per 100 inspected", r["round"], r["n_graded"],
                     r["n_inspected"], r["n_regraded"], r["n_new_positive"],
                     "n/a" if r["new_per_100"] is None else f"{r['new_per_100']:.1f}")
        for r in report["runs"]:
            log.info("run %d (%s): %d of the %d graded positives in its top %d", r["run"],
                     r["candidates"], r["n_in_top_k"], r["n_positives"], r["top_k"])
        log.info("rounds of task %s -> %s", task, args.out)
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
