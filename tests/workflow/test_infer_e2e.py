"""Inference and gather on the tiny run: provenance, probabilities at the stated prevalence,
survey-wide ranks, candidates, and the stamps kept by default."""

from __future__ import annotations

import csv
import json

import numpy as np
from astropy.io import fits
from astropy.table import Table
from conftest import TINY

from skysift import config, modelspec
from skysift.score import prior
from skysift.stamps.cutouts import FLAG_BITS

TASKS = ("lens", "merger")
MODELS = ("classical", "baseline3")  # tiny.yaml's models, every task (classical primary)
PREVALENCE = {"lens": 0.001, "merger": 0.01}  # the schema defaults; tiny.yaml keeps them


def test_shard_scores_carry_provenance_and_every_object(tiny_run):
    files = sorted((tiny_run / "results" / "scores").glob("s*.fits"))
    assert files
    for path in files:
        header = fits.getheader(path, 1)
        for key in ("HIERARCH skysift_version", "HIERARCH git_commit", "HIERARCH config_hash"):
            assert key.split()[-1] in header, key
        shas = {header[k] for k in header if k.startswith("MSHA")}
        assert len(shas) == len(TASKS) * len(MODELS) and all(len(s) == 64 for s in shas)
        data = fits.getdata(path, 1)
        assert data["selected"].all()  # no infer.select: every object scored
        for task in TASKS:
            for model in MODELS:
                assert np.isfinite(data[f"score_{task}_{model}"]).all()
        assert header["TTA"] == 0


def test_catalog_probabilities_and_ranks(tiny_run):
    cat = fits.getdata(tiny_run / "results" / "catalog.fits", 1)
    index = np.asarray(cat["index"])
    for task in TASKS:
        z = np.asarray(cat[f"score_{task}_baseline3"], dtype=np.float64)
        np.testing.assert_allclose(cat[f"prob_{task}_baseline3"],
                                   prior.probability(z, PREVALENCE[task]), rtol=1e-6)
        # a balanced-set probability sigmoid(z) would be far larger for the top objects
        assert cat[f"prob_{task}_baseline3"].max() < prior.sigmoid(z.max())
        order = np.lexsort((index, -z))
        rank = np.asarray(cat[f"rank_{task}_baseline3"])
        np.testing.assert_array_equal(rank[order], np.arange(1, len(cat) + 1))


def test_sidecar_and_candidates(tiny_run):
    results = tiny_run / "results"
    sidecar = json.loads((results / "catalog.json").read_text())
    cat = Table.read(results / "catalog.fits")
    counts = sidecar["counts"]
    assert counts["n_rows"] == counts["n_selected"] == len(cat)
    assert set(counts["flags"]) == set(FLAG_BITS)
    for bit, value in FLAG_BITS.items():
        assert counts["flags"][bit] == int((np.asarray(cat["flags"]) & value != 0).sum())
    header = fits.getheader(results / "catalog.fits", 1)
    assert sidecar["models"] == {k: header[k] for k in header if k.startswith(("MSHA", "MNAME",
                                                                               "MTASK", "MODEL"))}
    assert sidecar["provenance"]["config_hash"] == header["HIERARCH config_hash"]
    for task in TASKS:
        with open(results / "candidates" / f"{task}.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == min(10, len(cat))
        primary = modelspec.primary_specs(config.load(TINY))[task].name  # ranks the list
        for name in ("rank", "index", "id", "ra", "dec", "tile", "flags",
                     f"score_{task}_{primary}", f"prob_{task}_{primary}",
                     f"rank_{task}_{primary}", "selected"):
            assert name in rows[0], name
        assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
        assert [int(r[f"rank_{task}_{primary}"]) for r in rows] == list(range(1, len(rows) + 1))
        best = np.asarray(cat[f"score_{task}_{primary}"]).max()
        assert float(rows[0][f"score_{task}_{primary}"]) == float(np.float32(best))


def test_scores_come_from_the_tiles_and_training_stamps_are_kept(tiny_run):
    results = tiny_run / "results"
    shards = sorted(p.stem for p in (results / "scores").glob("s*.fits"))
    training = json.loads((results / "index" / "training_shards.json").read_text())["shards"]
    for shard in shards:
        header = fits.getheader(results / "scores" / f"{shard}.fits", 1)
        assert header["HIERARCH source"] == "tiles"  # infer read no stamps file
        assert "from tiles" in (tiny_run / "logs" / "infer" / f"{shard}.log").read_text()
    # stamps are made for the training sets' shards only, and kept (infer.keep_stamps)
    assert all((results / "stamps" / f"{s}.h5").exists() for s in training)
    assert {p.stem for p in (results / "stamps").glob("s*.h5")} <= set(training)


def test_two_stages_and_a_per_shard_catalog_plan_on_the_tiny_run(tiny_run, tmp_path):
    """infer.first_stage: the tiny run plans infer (first stage), one rescore_plan, a rescore
    per shard, then gather and what reads the catalog; infer.catalog_format and catalog_csv:
    gather writes the folder of parts and no CSV, evaluate and recover read the folder (a
    dry run of the shared run)."""
    import re

    from test_pipeline import _dry_run_with

    planned, out = _dry_run_with(tiny_run, tmp_path / "two.yaml", (
        "infer:\n  first_stage: auto\n  catalog_format: parquet_per_shard\n"
        "  catalog_csv: false\n"))
    assert {"infer", "rescore_plan", "rescore", "gather", "evaluate", "recover"} <= planned
    gather_job = out.split("rule gather:")[1].split("\n\n")[0]
    assert "results/catalog," in gather_job and "catalog.csv" not in gather_job
    assert "results/candidates.fits" in gather_job
    evaluate_job = out.split("rule evaluate:")[1].split("\n\n")[0]
    assert re.search(r"input: results/catalog\b(?!\.)", evaluate_job), evaluate_job
    n_shards = len(list((tiny_run / "results" / "index" / "shards").glob("s*.fits")))
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], flags=re.M))
    assert int(stats["rescore"]) == int(stats["infer"]) == n_shards
    assert int(stats["rescore_plan"]) == 1
