"""Benchmark planning at survey scale: ``snakemake -n`` for an N-tile survey after the survey
index, its time and its job count against the README's formula.

Builds, in ``--work`` (once; reused when it exists), a survey of ``--tiles`` tiles whose
tile files are empty (a dry run only checks that inputs exist and how old they are) and
whose headers are synthetic: a TAN WCS per tile, 2048² pixels at 0.2", on a square grid,
written as the header summary ``skysift check`` would write (``results/tile_headers.json``,
:func:`skysift.survey.headers.write_header_summary`); one catalogued object at each tile's
centre. The real ``skysift index`` then builds the index from that summary (timed), the
inputs are made older than the outputs, and ``snakemake -n`` plans the rest (timed, twice).
The job count is compared with ``3 S + 3 T + M + 7`` (README; minus check and survey_index,
which ran): S shards of ``index.tiles_per_shard`` tiles, T tasks, M models of the recipe
(``full`` for a user's survey: d4 and classical per task).

    python benchmarks/plan_survey.py --work /tmp/plan-bench [--tiles 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table
from astropy.wcs import WCS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from skysift.config import load  # noqa: E402
from skysift.modelspec import model_specs  # noqa: E402
from skysift.survey.headers import write_header_summary  # noqa: E402
from skysift.survey.tiles import TileHeader  # noqa: E402

BANDS = ["g", "r", "i"]
TILE_PIX = 2048
PIXSCALE_ARCSEC = 0.2


def _wcs(ra_deg: float, dec_deg: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(TILE_PIX + 1) / 2, (TILE_PIX + 1) / 2]
    wcs.wcs.cdelt = [-PIXSCALE_ARCSEC / 3600, PIXSCALE_ARCSEC / 3600]
    wcs.pixel_shape = (TILE_PIX, TILE_PIX)
    return wcs


def build(work: Path, n_tiles: int) -> dict:
    """Write the config, empty tile files, the header summary, the catalog and check.json;
    run ``skysift index``. Returns the config and the index's wall time."""
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "tiles").mkdir(exist_ok=True)
    user = {"survey": {"kind": "files", "tiles": "tiles/{tile}_{band}.fits", "bands": BANDS,
                       "catalog": "catalog.fits", "columns": {"id": "objid", "ra": "ra",
                                                              "dec": "dec"}}}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(user))
    config = load(work / "config" / "config.yaml")
    config["survey"]["tiles"] = str(work / "tiles" / "{tile}_{band}.fits")
    side = math.ceil(math.sqrt(n_tiles))
    step_deg = TILE_PIX * PIXSCALE_ARCSEC / 3600 * 0.98
    headers, ra, dec = [], [], []
    for k in range(n_tiles):
        r, d = 150.0 + step_deg * (k % side), -10.0 + step_deg * (k // side)
        tile = f"t{k:06d}"
        paths = [str(work / "tiles" / f"{tile}_{b}.fits") for b in BANDS]
        for p in paths:
            Path(p).touch()
        headers.append(TileHeader(tile, BANDS, paths, [], _wcs(r, d), (TILE_PIX, TILE_PIX),
                                  PIXSCALE_ARCSEC, [0.8] * 3, [27.0] * 3))
        ra.append(r)
        dec.append(d)
    Table({"objid": np.arange(n_tiles, dtype=np.int64), "ra": ra, "dec": dec}).write(
        work / "catalog.fits", overwrite=True)
    results = work / "results"
    results.mkdir(exist_ok=True)
    (results / "check.json").write_text(json.dumps({"synthetic": True, "n_tiles": n_tiles}))
    write_header_summary(results / "tile_headers.json", headers, config)
    t0 = time.perf_counter()
    cfg = json.dumps({"survey": config["survey"]})
    subprocess.run([sys.executable, "-m", "skysift", "index", "--config-json", cfg, "--out-dir",
                    str(results / "index"), "--headers", str(results / "tile_headers.json"),
                    "--quiet"], check=True, cwd=work,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    index_s = time.perf_counter() - t0
    # the inputs older than the outputs, as after a real run
    now = time.time()
    for p in list((work / "tiles").iterdir()) + [work / "catalog.fits"]:
        os.utime(p, (now - 30, now - 30))
    for p in (results / "check.json", results / "tile_headers.json"):
        os.utime(p, (now - 20, now - 20))
    return {"index_s": index_s}


def dry_run(work: Path, *extra: str) -> tuple[float, dict[str, int], str]:
    """``snakemake -n`` in ``work`` (``extra`` arguments appended): seconds, {rule: jobs}
    with ``total``, and its output."""
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--cores", "2", "--nolock", "-n", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:"
                               + os.environ.get("PATH", "")})
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    table = proc.stdout.split("Job stats:")[1].split("\n\n")[0]
    stats = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}
    return seconds, stats, proc.stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--tiles", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    built = (build(args.work, args.tiles) if not (args.work / "results" / "index").exists()
             else {"index_s": None})
    config = load(args.work / "config" / "config.yaml")
    with open(args.work / "results" / "index" / "shards.json") as fh:
        n_shards = len(json.load(fh)["shards"])
    n_tasks, n_models = len(config["tasks"]), len(model_specs(config))
    formula = 3 * n_shards + 3 * n_tasks + n_models + 7
    runs = [dry_run(args.work) for _ in range(args.repeats)]
    stats = runs[0][1]
    planned = stats["total"]
    two = args.work / "two_stages.yaml"
    two.write_text("infer:\n  first_stage: auto\n")
    two_s, two_stats, _ = dry_run(args.work, "--configfile",
                                  str(args.work / "config" / "config.yaml"), str(two))
    load_avg = os.getloadavg()
    print(json.dumps({
        "tiles": args.tiles, "shards": n_shards, "tasks": n_tasks, "models": n_models,
        "index_s": built["index_s"], "dry_run_s": [round(r[0], 1) for r in runs],
        "planned_jobs": planned, "formula_3S_3T_M_7": formula,
        "formula_minus_check_and_index": formula - 2, "jobs_by_rule": stats,
        "two_stages": {"dry_run_s": round(two_s, 1), "planned_jobs": two_stats["total"],
                       "formula_plus_S_plus_1_minus_2": formula + n_shards + 1 - 2},
        "machine": f"{platform.node()} {os.cpu_count()} CPUs",
        "load_average": [round(x, 1) for x in load_avg]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
