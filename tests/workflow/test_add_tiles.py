"""Adding tiles to a finished run re-runs only their inference (issue 6; issue 19: no cutouts).

A real Snakemake run on a `files` survey (four mock tiles written by ``skysift.sim.mock`` into a
folder; the run first sees two, then all four) with training_set.shards frozen, the default:
the second run scores only the two new shards (no cutouts, no stamps: infer reads the tiles
and lists their rejects, the review pages' stamps are cut after ranking, and no training set
reads them), re-makes no training set and retrains no model, and the catalog
then holds the new tiles' objects.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from conftest import REPO, TINY, run_env, snakemake_cmd

from skysift.sim import mock

FIRST, ADDED = ("m000", "m001"), ("m002", "m003")
BANDS = ("g", "r", "i")


def _write_survey(folder: Path) -> dict:
    """Four tiny mock tiles, catalog and truth in ``folder``; returns the survey section."""
    survey = {"kind": "mock", "tiles": str(folder / "{tile}_{band}.fits"),
              "catalog": str(folder / "catalog.fits"), "labels": str(folder / "truth.fits"),
              "known_lenses": None}
    tiny = yaml.safe_load(TINY.read_text())
    config = {"seed": 7, "survey": survey, "mock": {**tiny["mock"], "n_tiles": 4}}
    assert mock.main(["--config-json", json.dumps(config), "--quiet"]) == 0
    return {**survey, "kind": "files"}


def _expose(survey_dir: Path, tiles_dir: Path, names) -> None:
    tiles_dir.mkdir(exist_ok=True)
    for name in names:
        for band in BANDS:
            shutil.copy2(survey_dir / f"{name}_{band}.fits", tiles_dir / f"{name}_{band}.fits")


def _run(workdir: Path, configfile: Path, *extra: str) -> str:
    cmd = [str(configfile) if arg == str(TINY) else arg for arg in snakemake_cmd(workdir, *extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=600)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}"
                         for p in (workdir / "logs").rglob("*.log"))
        pytest.fail(f"snakemake failed:\n{proc.stderr[-5000:]}\n{logs}")
    return proc.stderr + proc.stdout  # snakemake 9: jobs on stderr, a dry run's summary on stdout


def _jobs(stderr: str) -> list[tuple[str, str]]:
    """(rule, shard or '') of every job a snakemake log reports."""
    jobs, rule = [], None
    for line in stderr.splitlines():
        m = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            jobs.append((rule, ""))
            continue
        m = re.match(r"^wildcards: .*shard=(s\d+)", line.strip())
        if m and jobs and jobs[-1][0] == rule:
            jobs[-1] = (rule, m.group(1))
    return jobs


def _state(paths) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in paths}


def test_added_tiles_only_cut_and_score_new_shards(tmp_path):
    survey = _write_survey(tmp_path / "survey")
    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copytree(REPO / "config", workdir / "config")
    tiles_dir = tmp_path / "tiles"
    _expose(tmp_path / "survey", tiles_dir, FIRST)
    config = yaml.safe_load(TINY.read_text())
    config.pop("mock")
    config["survey"] = {**survey, "tiles": str(tiles_dir / "{tile}_{band}.fits")}
    config["index"] = {"tiles_per_shard": 1}
    config["models"] = [{"name": "baseline3", "architecture": "baseline3"}]
    config["train"] = {**config["train"], "epochs": 1}
    config["training_set"] = {"max_negatives": 80}
    configfile = tmp_path / "add_tiles.yaml"
    configfile.write_text(yaml.safe_dump(config))

    first = _jobs(_run(workdir, configfile))
    results = workdir / "results"
    record = json.loads((results / "index" / "training_shards.json").read_text())
    assert record["shards"] == ["s0000", "s0001"]
    assert ("train", "") in first and ("infer", "s0001") in first
    frozen = [*results.glob("train/*.h5"), *results.glob("models/*/*.pt"),
              *results.glob("models/*/*.metrics.json"), results / "split.fits",
              results / "index" / "training_shards.json"]
    frozen += [results / f"{step}/{shard}.{ext}" for shard in record["shards"]
               for step, ext in (("cutouts", "h5"), ("stamps", "h5"), ("scores", "fits"))]
    frozen += [results / f"benchmarks/{step}/{shard}.tsv" for shard in record["shards"]
               for step in ("cutouts", "preprocess", "infer")]
    assert len(frozen) == 4 + 2 + 2 + 2 + 6 + 6  # two tasks' sets and models, two shards
    before = _state(frozen)
    n_before = len(fits.getdata(results / "catalog.fits", 1))

    _expose(tmp_path / "survey", tiles_dir, ADDED)
    second = _jobs(_run(workdir, configfile))
    ran = {rule for rule, _ in second}
    assert not ran & {"training_set", "augment", "train", "split"}, second
    per_shard = {(rule, shard) for rule, shard in second if shard}
    # infer scores the new shards from their tiles and lists their rejects: no cutouts and
    # no stamps for shards no training set reads (cutouts.all_shards: false)
    assert per_shard == {("infer", shard) for shard in ("s0002", "s0003")}, second
    assert not any((results / f"cutouts/{s}.h5").exists() for s in ("s0002", "s0003"))
    assert {"survey_index", "gather"} <= ran
    assert _state(frozen) == before  # same bytes, same mtime: nothing re-made
    assert json.loads((results / "index" / "shards.json").read_text())["n_kept"] == 2
    assert all((results / f"scores/{s}.fits").exists() for s in ("s0002", "s0003"))

    cat = fits.getdata(results / "catalog.fits", 1)
    tiles = np.char.strip(np.asarray(cat["tile"]).astype(str))
    assert set(tiles.tolist()) == set(FIRST + ADDED)
    assert len(cat) > n_before
    rejects = Table.read(results / "rejects.ecsv")
    n_catalog = json.loads((results / "index" / "tiles.json").read_text())["n_catalog"]
    assert len(cat) + len(rejects) == n_catalog  # every object counted once, none lost
    assigned = fits.getdata(results / "index" / "assignment.fits", 1)
    new_rows = np.isin(np.char.strip(np.asarray(assigned["tile"]).astype(str)), ADDED)
    assert new_rows.sum() > 0
    assert np.isin(assigned["index"][new_rows],
                   np.concatenate([cat["index"], rejects["index"]])).all()

    assert "Nothing to be done" in _run(workdir, configfile, "-n")
