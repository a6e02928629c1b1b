"""End to end: the real Snakefile on the tiny mock survey (one shared run), and its plan."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import yaml
from astropy.table import Table
from conftest import REPO, TINY, run_env, snakemake_cmd

RULES = {"mock", "check", "survey_index", "rejects", "split", "cutouts", "preprocess",
         "training_set", "augment", "train", "infer", "gather", "evaluate", "review"}


def test_dry_run_plans_every_rule(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    proc = subprocess.run(snakemake_cmd(tmp_path, "-n", "--quiet", "rules"), capture_output=True,
                          text=True, env=run_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    planned = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    per_shard = {"cutouts", "preprocess", "infer"}  # planned once the survey_index checkpoint ran
    assert RULES - per_shard <= planned, f"missing rules in plan: {RULES - per_shard - planned}"


def test_bad_config_fails_before_any_job(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"epochs": 0}}))
    proc = subprocess.run(snakemake_cmd(tmp_path, "-n", "--configfile", str(bad)),
                          capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode != 0
    assert "epochs" in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_catalog_scores_every_assigned_object_with_exact_ids(tiny_run):
    cat = Table.read(tiny_run / "results" / "catalog.fits")
    mock_cat = Table.read(tiny_run / "data" / "mock" / "catalog.fits")
    rejects = Table.read(tiny_run / "results" / "index" / "rejects.ecsv")
    assert len(cat) + len(rejects) == len(mock_cat)  # nothing silently dropped
    assert cat["id"].dtype.kind == "i"
    np.testing.assert_array_equal(cat["id"], np.asarray(mock_cat["objid"])[cat["index"]])
    assert (np.asarray(cat["id"]) > 2**53).all()
    for task in ("lens", "merger"):
        assert np.isfinite(cat[f"score_{task}_baseline3"]).all()
    assert "CONFHASH" in cat.meta or any("config" in k.lower() for k in cat.meta)


def test_csv_catalog_and_candidates(tiny_run):
    cat = Table.read(tiny_run / "results" / "catalog.fits")
    csv = Table.read(tiny_run / "results" / "catalog.csv", format="ascii.csv")
    np.testing.assert_array_equal(np.asarray(csv["id"], dtype=np.int64), cat["id"])
    for task in ("lens", "merger"):
        cand = Table.read(tiny_run / "results" / "candidates" / f"{task}.csv", format="ascii.csv")
        assert len(cand) == min(10, len(cat))
        assert np.all(np.diff(cand[f"score_{task}_baseline3"]) <= 0)


def test_metrics_and_plots(tiny_run):
    metrics = json.loads((tiny_run / "results" / "metrics.json").read_text())
    for task in ("lens", "merger"):
        m = metrics["tasks"][task]
        for name in ("auroc", "tpr0", "tpr10"):
            assert name in m
    pngs = ["results/roc.png", "results/models/lens/baseline3.curve.png",
            "results/models/merger/baseline3.curve.png"]
    for png in pngs:
        assert (tiny_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_rule_logged_and_benchmarked(tiny_run):
    logs = {p.relative_to(tiny_run / "logs").parts[0].removesuffix(".log")
            for p in (tiny_run / "logs").rglob("*.log")}
    assert RULES <= logs
    assert (tiny_run / "results" / "benchmarks" / "mock.tsv").exists()


def test_rerun_is_a_no_op(tiny_run):
    proc = subprocess.run(snakemake_cmd(tiny_run, "-n"), capture_output=True, text=True,
                          env=run_env(), timeout=120)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_tiny_config_is_valid():
    from skysift import config
    config.load(TINY)


def test_catalog_and_merged_rejects_partition_the_survey_catalog_by_id(tiny_run):
    """Every catalog row is in results/catalog.fits or results/rejects.ecsv (the merged rejects
    of every stage), exactly once, by id and by row."""
    cat = Table.read(tiny_run / "results" / "catalog.fits")
    rejects = Table.read(tiny_run / "results" / "rejects.ecsv")
    survey = Table.read(tiny_run / "data" / "mock" / "catalog.fits")
    rows = np.concatenate([np.asarray(cat["index"]), np.asarray(rejects["index"], np.int64)])
    assert np.array_equal(np.sort(rows), np.arange(len(survey)))
    ids = np.concatenate([np.asarray(cat["id"]), np.asarray(rejects["id"], np.int64)])
    np.testing.assert_array_equal(np.sort(ids), np.sort(np.asarray(survey["objid"])))


def test_changing_the_models_renders_no_training_set_again(tiny_run, tmp_path):
    """Iterating on models does not pay for injections again: a new models list plans train,
    infer and what follows, never a training set (its params hold no models entry)."""
    extra = tmp_path / "models.yaml"
    extra.write_text("models:\n  - {name: other, architecture: baseline3, epochs: 1}\n")
    cmd = snakemake_cmd(tiny_run, "-n")
    cmd.insert(cmd.index("--configfile") + 2, str(extra))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=run_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    planned = set(re.findall(r"^rule (\w+):", out, flags=re.M))
    planned |= set(re.findall(r"^localrule (\w+):", out, flags=re.M))
    assert "train" in planned and "training_set" not in planned and "augment" not in planned
