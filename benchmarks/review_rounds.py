"""Review rounds on the mock: do round-1 grades teach round 2 (issue 18, "Done means")?

    python benchmarks/review_rounds.py --work /tmp/rounds [--tiles 6] [--budget 2000]

1. The mock survey (``skysift mock``) with ``--lens-fraction`` lenses among its galaxies; the
   runs read it as a user's survey (``survey.kind: files``) whose labels table holds only
   its known lenses: the lenses with the brightest arcs (``--known-fraction``, the mock's
   known-lens rule), positives only, as a search starts.
2. Round 1: the pipeline as is (``training_set.use: both``: those labels plus simulations;
   the classical model, cheap on 2 CPU cores), to the candidate list.
3. A scripted grader inspects round 1's ranking from the top and grades from the truth as a
   person would: A for a lens, N otherwise; already known or graded objects are skipped.
   **Stated prevalence by reweighting**: the mock holds far more lenses than a survey (1 in
   ``1 / --prevalence`` objects); each non-lens inspected stands for ``w`` images of such a
   survey (the non-lenses it would hold at that score), so inspecting it costs ``w`` images
   of the round's budget (``--budget``), a lens costs one. New lenses per 100 images
   inspected = 100 x lenses found / images inspected.
4. Round 1 continued: round 1's own ranking read further down with the same budget (what
   another round without retraining would find). Round 2: the same run with round 1's
   grades in ``review.grades`` (A -> positive, N -> real hard negative; grades of the test
   split left out by skysift). Control: the same run
   with as many randomly chosen objects (not known, not graded, not in the test split)
   labelled from the truth instead, given the same way. Each then inspects its own ranking
   with the same budget, skipping what round 1 graded. The two runs are independent and run
   side by side (the control in a copy of the working directory, ``--control-work``).
   ``--report-only`` recomputes the figures from the catalogs the runs kept.

Prints and writes WORK/review_rounds.json: per round new lenses per 100 images inspected,
lenses found, objects graded, the wall time of every run, the machine and its load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from skysift.survey.hashsplit import assign_split  # noqa: E402

SHEET = ("rank", "index", "id", "ra", "dec", "score", "grade")


def sh(cmd: list[str], cwd: Path, log: Path) -> float:
    """Run ``cmd`` in ``cwd`` (stdout+stderr to ``log``); its wall time, s; exit on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).returncode
    if rc:
        raise SystemExit(f"review_rounds: {' '.join(cmd)} failed ({rc}); see {log}")
    return time.perf_counter() - t0


def mock_config(args) -> dict:
    return {"seed": args.seed,
            "survey": {"kind": "mock", "tiles": "data/mock/tiles/{tile}_{band}.fits",
                       "catalog": "data/mock/catalog.fits", "known_lenses": None},
            "mock": {"n_tiles": args.tiles, "tile_size_pix": 600,
                     "n_galaxies_per_tile": args.galaxies, "lens_fraction": args.lens_fraction,
                     "merger_fraction": args.lens_fraction, "known_lenses": None}}


def run_config(args, grades: list[dict]) -> dict:
    return {"seed": args.seed,
            "survey": {"kind": "files", "tiles": "data/mock/tiles/{tile}_{band}.fits",
                       "catalog": "data/mock/catalog.fits", "labels": "known.csv",
                       "labels_id_column": "objid", "known_lenses": None},
            "tasks": [{"name": "lens", "label": "is_lens"}],
            "training_set": {"use": "both", "max_negatives": args.max_negatives},
            "models": [{"name": "classical", "architecture": "classical", "primary": True,
                        "classical": {"tune_trials": args.tune_trials,
                                      "importance_repeats": 0}}],
            "infer": {"top_k": 100},
            "evaluate": {"prevalence": {"lens": args.prevalence}},
            "review": {"grades": grades}}


def pipeline(work: Path, name: str, cfg: dict, cores: int) -> dict:
    """One run of the Snakefile to the candidate list; keeps its catalog as
    WORK/{name}_catalog.fits and its candidates as WORK/{name}_candidates.csv."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(path), "--cores", str(cores), "--rerun-incomplete",
           "results/candidates/lens.csv"]
    load0 = os.getloadavg()[0]
    seconds = sh(cmd, work, work / f"{name}.snakemake.log")
    shutil.copy(work / "results" / "catalog.fits", work / f"{name}_catalog.fits")
    shutil.copy(work / "results" / "candidates" / "lens.csv", work / f"{name}_candidates.csv")
    return {"seconds": round(seconds, 1), "load": [round(load0, 2),
                                                   round(os.getloadavg()[0], 2)]}


def run_info(work: Path, name: str) -> dict:
    """Rules a run ran and its wall time from its Snakemake log (first to last job stamp)."""
    text = (work / f"{name}.snakemake.log").read_text()
    jobs = sorted({line.split()[-1].rstrip(":") for line in text.splitlines()
                   if line.startswith(("rule ", "localrule "))})
    stamps = [time.mktime(time.strptime(m, "%a %b %d %H:%M:%S %Y"))
              for m in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", text, flags=re.M)]
    return {"rules_run": jobs,
            "jobs_wall_seconds": round(stamps[-1] - stamps[0], 1) if stamps else None}


def ranking(path: Path) -> list[tuple[int, str]]:
    """(index, id text) of a catalog's objects, best primary-model rank first."""
    cat = Table.read(path)
    order = np.argsort(np.asarray(cat["rank_lens_classical"]), kind="stable")
    return [(int(cat["index"][i]), str(cat["id"][i])) for i in order]


def inspect(ranking, is_lens: dict, skip: set, budget: float, w: float) -> tuple[list, dict]:
    """Walk ``ranking`` from the top, skipping ``skip``, until ``budget`` images: the graded
    objects [(index, id, grade)] and the round's figures."""
    graded, images, found = [], 0.0, 0
    for key in ranking:
        if key in skip:
            continue
        if images >= budget:
            break
        lens = is_lens[key[1]]
        graded.append((key[0], key[1], "A" if lens else "N"))
        images += 1.0 if lens else w
        found += int(lens)
    return graded, {"objects_graded": len(graded), "images_inspected": round(images, 1),
                    "lenses_found": found, "new_per_100": round(100.0 * found / images, 2)}


def write_sheet(path: Path, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SHEET)
        for rank, (index, oid, grade) in enumerate(rows, start=1):
            w.writerow([rank, index, oid, "", "", "", grade])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--tiles", type=int, default=6)
    p.add_argument("--galaxies", type=int, default=420, help="galaxies per 600² tile")
    p.add_argument("--lens-fraction", type=float, default=0.04)
    p.add_argument("--known-fraction", type=float, default=0.3)
    p.add_argument("--prevalence", type=float, default=0.001, help="stated: 1 lens per 1/p")
    p.add_argument("--budget", type=float, default=2000, help="images inspected per round")
    p.add_argument("--tune-trials", type=int, default=2)
    p.add_argument("--max-negatives", type=int, default=300,
                   help="training_set.max_negatives (simulations scale with it)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--control-work", type=Path,
                   help="working directory of the control run (default WORK-control)")
    p.add_argument("--report-only", action="store_true",
                   help="no run: the figures from the catalogs the runs kept")
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", work / "config", dirs_exist_ok=True)
    (work / "mock.yaml").write_text(yaml.safe_dump(mock_config(args)))
    t_mock = 0.0 if args.report_only else sh(
        [sys.executable, "-m", "skysift", "mock", "--config", "mock.yaml"], work,
        work / "mock.log")
    truth = Table.read(work / "data" / "mock" / "catalog_truth.fits")
    ids = np.asarray(truth["objid"]).astype(str)
    lens = np.asarray(truth["is_lens"]).astype(bool)
    is_lens = dict(zip(ids.tolist(), lens.tolist(), strict=True))
    snr = np.where(lens, np.nan_to_num(np.asarray(truth["arc_snr"], float), nan=0), -1)
    n_known = int(round(args.known_fraction * lens.sum()))
    known = ids[np.argsort(-snr, kind="stable")[:n_known]]
    Table({"objid": np.asarray(truth["objid"])[np.isin(ids, known)],
           "is_lens": np.ones(n_known, np.uint8)}).write(work / "known.csv", overwrite=True)
    pi_mock = lens.mean()
    w = (pi_mock / (1 - pi_mock)) * ((1 - args.prevalence) / args.prevalence)
    out = {"load_start": round(os.getloadavg()[0], 2),
           "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
           "objects": int(ids.size), "lenses": int(lens.sum()), "known_lenses": n_known,
           "mock_prevalence": round(float(pi_mock), 5), "stated_prevalence": args.prevalence,
           "negative_weight": round(float(w), 2), "budget_images": args.budget,
           "mock_seconds": round(t_mock, 1), "args": {k: str(v) for k, v in vars(args).items()}}
    ctrl_work = (args.control_work or Path(f"{work}-control")).resolve()
    grades = {"round2": [{"file": "rounds/round1.csv", "task": "lens", "round": 1}],
              "control": [{"file": "rounds/control.csv", "task": "lens", "round": 1}]}
    runs = {}
    if not args.report_only:
        runs["round1"] = pipeline(work, "round1", run_config(args, []), args.cores)
    r1 = ranking(work / "round1_catalog.fits")
    skip0 = {k for k in r1 if k[1] in set(known.tolist())}
    g1, out["round1"] = inspect(r1, is_lens, skip0, args.budget, w)
    rounds = work / "rounds"
    rounds.mkdir(exist_ok=True)
    write_sheet(rounds / "round1.csv", g1)
    graded1 = skip0 | {(i, o) for i, o, _ in g1}
    # the reference without retraining: round 1's own list read further down, same budget
    _, out["round1_continued"] = inspect(r1, is_lens, graded1, args.budget, w)
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}  # the schema's split defaults
    split = assign_split(np.array([o for _, o, _ in g1], dtype=str), fractions, "skysift-v1")
    n_train = int((split != 2).sum())
    pool = [k for k in r1 if k not in graded1]
    pool_split = assign_split(np.array([o for _, o in pool], dtype=str), fractions,
                              "skysift-v1")
    pool = [k for k, s in zip(pool, pool_split, strict=True) if s != 2]
    rng = np.random.default_rng(args.seed)
    ctrl = [pool[i] for i in rng.choice(len(pool), n_train, replace=False)]
    write_sheet(rounds / "control.csv", [(i, o, "A" if is_lens[o] else "N") for i, o in ctrl])
    out["round1"].update(grades_used_for_training=n_train,
                         control_lenses=int(sum(is_lens[o] for _, o in ctrl)))
    if not args.report_only:  # round 2 and control are independent: run side by side
        shutil.copytree(work, ctrl_work, symlinks=True, dirs_exist_ok=True)
        with ThreadPoolExecutor(2) as pool_:
            futures = {name: pool_.submit(pipeline, where, name,
                                          run_config(args, grades[name]), args.cores)
                       for name, where in (("round2", work), ("control", ctrl_work))}
            runs.update({name: f.result() for name, f in futures.items()})
    for name, where in (("round1", work), ("round2", work), ("control", ctrl_work)):
        if name != "round1":
            _, out[name] = inspect(ranking(where / f"{name}_catalog.fits"), is_lens, graded1,
                                   args.budget, w)
        out[name].update(run_info(where, name), **runs.get(name, {}))
    out["load_end"] = round(os.getloadavg()[0], 2)
    (work / "review_rounds.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
