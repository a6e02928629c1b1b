"""Read back graded candidates and report purity by grade (``skysift grades``).

Grades come from the review page's exports (one file per grader, docs/review.md) and from
sheets filled by hand (``results/review/{task}_grades.csv``, rule ``review``): A (certain
lens), B (probable), C (possible), N (not a lens), empty for a candidate not yet graded.
Several graders are combined per object (:mod:`.combine`: mean on A 3 ... N 0, rounded,
ties down) and their disagreement reported. Purity is the fraction of the graded candidates
that are positive, for three definitions of positive: A, A+B and A+B+C, each with a Wilson
score interval at ``evaluate.ci``. Given the original sheet (``--candidates``), every object
is matched back by catalog ``index`` and ``id`` exactly (text, never through a float), so a
spreadsheet that rounded an id, a dropped row or an export of another run is caught.

Given the page's sample file (``--sample results/review/{task}_sample.csv``, written by the
review step beside a page that mixes the top K with a random sample in bins of score and
known-lens checks, :mod:`.sample`), every graded object is joined back to its source and
weight by ``index`` and ``id``: purity by grade is then that of the top K alone, and the
report adds purity per score bin, completeness per score threshold and the checks' recovery
(:mod:`.estimate`, under ``sample``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from skysift import cli
from skysift.errors import DataError
from skysift.io import provenance, write_json
from skysift.metrics import wilson_interval
from skysift.review.combine import Key, agreement, combine, combined_grade, write_combined
from skysift.review.estimate import sample_report
from skysift.review.sample import read_sample
from skysift.seeds import derive_seed
from skysift.survey.grades import (
    GRADES,
    GradesFile,
    match_sheet,
    read_grades_file,
    read_sheet,
    sheet_keys,
)

log = logging.getLogger(__name__)

#: Positive classes of the purity figures: name -> grades counted as lenses.
POSITIVES = {"A": ("A",), "A+B": ("A", "B"), "A+B+C": ("A", "B", "C")}


def purity(grades: Sequence[str], ci: float) -> dict:
    """Counts per grade and purity for each positive set of ``POSITIVES``.

    grades : one per candidate, in ``GRADES`` or '' (not graded, excluded from purity).
    Returns {"n_rows", "n_graded", "n_ungraded", "counts": {grade: n},
    "purity": {name: {"value", "k", "n", "interval": [lo, hi]}}, "ci"}.
    """
    counts = {g: sum(1 for x in grades if x == g) for g in GRADES}
    n = sum(counts.values())
    out = {"n_rows": len(grades), "n_graded": n, "n_ungraded": len(grades) - n,
           "counts": counts, "ci": ci, "purity": {}}
    for name, positive in POSITIVES.items():
        k = sum(counts[g] for g in positive)
        lo, hi = wilson_interval(k, n, ci)
        out["purity"][name] = {"value": k / n if n else None, "k": k, "n": n,
                               "interval": [lo, hi] if n else None}
    return out


def check_candidates(files: Sequence[GradesFile], candidates: str | Path) -> list[Key]:
    """Check every file against the candidates; returns the candidates' keys in order.

    A sheet must hold exactly the candidates (:func:`match_sheet`); an export only
    candidates (it lists the objects graded). Raises DataError naming file and line.
    """
    reference = read_sheet(candidates)
    keys = sheet_keys(reference, candidates)
    wanted = set(keys)
    for f in files:
        if f.kind == "sheet":
            match_sheet(f.rows, reference, f.path, candidates)
            continue
        for line, row in zip(f.lines, f.rows, strict=True):
            if (row["index"].strip(), row["id"]) not in wanted:
                raise DataError(f"{f.path}: line {line} (index {row['index']}, id {row['id']}) "
                                f"is not a candidate of {candidates}; was it exported from "
                                "another run's page, or the id changed by a spreadsheet?")
    return keys


def sample_grades(sample: str | Path, final: Mapping[Key, str]) -> tuple[list[dict], list[str]]:
    """The sample file's rows and each one's combined grade ('' if not graded); DataError
    when a graded object is not on the page the sample file describes."""
    rows = read_sample(sample)
    keys = [(r["index"].strip(), r["id"]) for r in rows]
    on_page = set(keys)
    unknown = [k for k in final if final[k] and k not in on_page]
    if unknown:
        raise DataError(f"{sample}: graded object index {unknown[0][0]}, id {unknown[0][1]} "
                        f"(and {len(unknown) - 1} more) is not on the page it describes; pass "
                        "the sample file the review step wrote with the page that was graded")
    return rows, [final.get(k, "") for k in keys]


def grade_files(config: Mapping, paths: Sequence[str | Path], candidates: str | Path | None,
                out: str | Path, combined_out: str | Path | None = None,
                sample: str | Path | None = None) -> dict:
    """Read grades files (sheets or page exports), combine the graders per object, write
    purity by combined grade and the graders' agreement as JSON; return it. ``sample``
    (the page's sample file) restricts purity by grade to the top K and adds the estimates
    from the random sample and the checks (:func:`skysift.review.estimate.sample_report`)."""
    if not paths:
        raise DataError("no grades file given; pass --grades (page exports) or --sheet")
    files = [read_grades_file(p) for p in paths]
    keys = check_candidates(files, candidates) if candidates is not None else None
    comb = combine(files)
    keys = keys if keys is not None else comb.keys
    final = [combined_grade(list(comb.grades[k].values()))[1] if k in comb.grades else ""
             for k in keys]
    estimates = None
    if sample is not None:
        rows, page = sample_grades(sample, dict(zip(keys, final, strict=True)))
        final = [g for r, g in zip(rows, page, strict=True) if r["source"] == "top"]
        ev = config["evaluate"]
        estimates = sample_report(rows, page, ev["n_bootstrap"], ev["ci"],
                                  derive_seed(config["seed"], "grades-sample"))
        estimates["file"] = str(sample)
    result = purity(final, config["evaluate"]["ci"])
    if not result["n_graded"]:
        raise DataError(f"{', '.join(map(str, paths))}: no row has a grade; fill the 'grade' "
                        f"column with {', '.join(GRADES)} or grade on the review page")
    result.update(
        sheet=str(paths[0]) if len(paths) == 1 else None, grades_files=[str(p) for p in paths],
        candidates=None if candidates is None else str(candidates),
        graders={g: sum(g in x for x in comb.grades.values()) for g in comb.graders},
        agreement=agreement(comb), combined=None if combined_out is None else str(combined_out),
        purity_over="top" if sample is not None else "all graded", sample=estimates,
        provenance=provenance(config, step="grades"))
    if combined_out is not None:
        write_combined(combined_out, comb)
    write_json(out, result)
    return result


def _fmt(value, interval) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "")


def log_sample(est: Mapping) -> None:
    """One log line per figure of the random sample's estimates."""
    for b in est["purity_by_bin"]:
        log.info("score bin %d [%.3g, %.3g]: %d of %d random objects graded are lenses, "
                 "purity %s, ~%s lenses among its %.0f objects outside the top K", b["bin"],
                 b["score_lo"], b["score_hi"], b["n_lenses"], b["n_graded"],
                 _fmt(b["purity"], b["interval"]), _fmt(b["lenses"], b["lenses_interval"]),
                 b["population"])
    comp = est["completeness"]
    log.info("estimated lenses in the scored catalog: %s; completeness at score >= %s",
             _fmt(comp["total_lenses"]["value"] or None, comp["total_lenses"]["interval"]),
             "; ".join(f"{t['score']:.3g}: {_fmt(t['value'], t['interval'])}"
                       for t in comp["thresholds"]))
    c = est["checks"]
    log.info("checks: %d of %d known lenses graded called A or B (%s)", c["n_called_lens"],
             c["n_graded"], _fmt(c["fraction"], c["interval"]))


def parser():
    """The ``skysift grades`` argument parser."""
    p = cli.parser("Purity by grade of graded candidates: review page exports (one per "
                   "grader) and hand-filled sheets, graders combined per object.")
    p.add_argument("--grades", nargs="+", default=[], metavar="FILE",
                   help="grades files exported by the review page (one per grader) or "
                        "filled sheets")
    p.add_argument("--sheet", help="a filled sheet (CSV, column grade); read with --grades")
    p.add_argument("--candidates",
                   help="the sheet as the review rule wrote it (results/review/{task}_grades"
                        ".csv) or the candidate list: every graded object must be a candidate")
    p.add_argument("--sample",
                   help="the page's sample file (results/review/{task}_sample.csv): purity by "
                        "grade of the top K, and purity and completeness as functions of score "
                        "from the random sample, the checks' recovery")
    p.add_argument("--out", required=True, help="purity JSON to write")
    p.add_argument("--combined", help="CSV to write: each graded object's combined grade")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the grades CLI; returns the exit code."""
    def body(args) -> int:
        paths = ([args.sheet] if args.sheet else []) + list(args.grades)
        res = grade_files(cli.load_config(args), paths, args.candidates, args.out,
                          args.combined, args.sample)
        figures = ", ".join(f"{name} {p['value']:.2f} [{p['interval'][0]:.2f}, "
                            f"{p['interval'][1]:.2f}]" for name, p in res["purity"].items())
        agree = res["agreement"]
        log.info("%d files, %d graders: %d of %d candidates graded (%s); purity %s; "
                 "%d objects graded more than once, %d with graders more than one step "
                 "apart -> %s", len(paths), agree["n_graders"], res["n_graded"],
                 res["n_rows"], " ".join(f"{g}={n}" for g, n in res["counts"].items()),
                 figures, agree["n_multiply_graded"],
                 agree["n_disagree_more_than_one_step"], args.out)
        if res["sample"] is not None:
            log_sample(res["sample"])
        return 0
    return cli.run(body, parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
