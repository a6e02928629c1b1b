"""End to end on the shared tiny run: known-lens recovery (training positives apart, the
catalog's known_lens flags), a planned lenscat run, one header read, shard files."""

from __future__ import annotations

import json
import subprocess

import h5py
import numpy as np
import yaml
from astropy.table import Table
from conftest import REPO, TINY, run_env, snakemake_cmd

from skysift import config as skyconfig
from skysift.evaluate.recover import STATUSES


def _config() -> dict:
    """The tiny run's validated config (config.yaml, then tiny.yaml), as the rules see it."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    tiny = yaml.safe_load(TINY.read_text())
    for key, value in tiny.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return skyconfig.validate(config)


def test_every_known_lens_of_the_mock_gets_a_status(tiny_run):
    config = _config()
    assert config["survey"]["known_lenses"], "the tiny run reports known-lens recovery"
    truth = Table.read(tiny_run / config["survey"]["labels"])
    n_lens = int((np.asarray(truth["is_lens"]) == 1).sum())
    n_listed = int(np.floor(0.3 * n_lens + 0.5)) + 2  # schema defaults of mock.known_lenses_*
    known = Table.read(tiny_run / config["survey"]["known_lenses"], format="ascii.csv")
    table = Table.read(tiny_run / "results" / "known_lenses.csv", format="ascii.csv")
    assert len(known) == len(table) == n_listed
    assert table["name"].tolist() == known["name"].tolist()
    assert set(table["status"].tolist()) <= set(STATUSES)
    assert table["status"].tolist()[-2:] == ["off-survey", "off-survey"]
    on = table[:-2]
    assert all(s in ("recovered", "scored-below-top-k", "rejected", "training_positive")
               for s in on["status"])
    ids = set(np.asarray(truth["objid"])[np.asarray(truth["is_lens"]) == 1].tolist())
    assert {int(i) for i in on["id"]} <= ids  # every match is a true lens, ids exact
    assert (np.asarray(on["sep_arcsec"]) < 1.0).all()
    catalog = Table.read(tiny_run / "results" / "catalog.fits")
    scored = on[on["status"] != "rejected"]
    assert (np.asarray(scored["rank"]) >= 1).all()
    assert (np.asarray(scored["rank"]) <= len(catalog)).all()
    top_k = config["infer"]["top_k"]
    assert (np.asarray(scored["in_top_k"]).astype(str) == "True").tolist() == \
        (np.asarray(scored["rank"]) <= top_k).tolist()
    # training positives: exactly the known lenses that are positive train/val rows of the
    # lens task's training set (the tiny run simulates lenses into real hosts)
    with h5py.File(tiny_run / "results" / "train" / "lens.h5", "r") as fh:
        pos = (fh["label"][:] == 1) & (fh["split"][:] <= 1)
        trained = set(fh["index"][:][pos].tolist())
    assert [s == "training_positive" for s in scored["status"]] == \
        [int(i) in trained for i in scored["index"]]
    # the catalog flags the objects of the matched, scored known lenses, by name
    flagged = catalog[np.asarray(catalog["known_lens"])]
    assert sorted(np.asarray(flagged["id"]).astype(np.int64).tolist()) == \
        sorted(int(i) for i in scored["id"])
    by_name = dict(zip(np.asarray(flagged["id"]).astype(np.int64).tolist(),
                       np.char.decode(np.asarray(flagged["known_name"])).tolist(), strict=True))
    assert all(by_name[int(i)] == n for i, n in zip(scored["id"], scored["name"], strict=True))
    summary = json.loads((tiny_run / "results" / "known_lenses.json").read_text())
    # the ranks are gather's survey-wide rank_* of the primary lens model, not re-computed
    rank_col = summary["ranked_by"].replace("score_", "rank_", 1)
    by_id = dict(zip(np.asarray(catalog["id"]).astype(np.int64).tolist(),
                     np.asarray(catalog[rank_col]).tolist(), strict=True))
    assert [by_id[int(i)] for i in scored["id"]] == np.asarray(scored["rank"]).tolist()
    assert summary["n_known"] == n_listed and summary["n_off_survey"] == 2
    assert summary["n_matched"] == n_listed - 2
    n_trained = summary["n_training_positive"]
    assert n_trained == sum(s == "training_positive" for s in on["status"])
    assert summary["n_in_top_k"] + summary["n_below_top_k"] + summary["n_rejected"] + \
        n_trained == summary["n_matched"]
    assert summary["n_catalog_scored"] == len(catalog)
    assert summary["trained_from"] == "results/train/lens.h5"
    assert len(summary["provenance"]["known_lenses_sha256"]) == 64
    f = summary["recovered_fraction"]
    assert f["lo"] <= f["value"] <= f["hi"] and f["n"] == n_listed - 2 - n_trained


def test_a_lenscat_run_is_planned_without_a_known_lens_file(tmp_path):
    """survey.known_lenses: lenscat: the mock writes no known-lens table, gather flags and
    recover counts the shipped catalogue's lenses (a dry run of the real Snakefile)."""
    extra = tmp_path / "lenscat.yaml"
    extra.write_text("survey: {known_lenses: lenscat}\n")
    proc = subprocess.run(snakemake_cmd(tmp_path, "-n", "-p", "--configfile", str(TINY),
                                        str(extra)),
                          capture_output=True, text=True, env=run_env(), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "known_lenses.csv --summary" in out  # rule recover is planned
    gather = next(line for line in out.splitlines() if "skysift gather" in line)
    assert "--known-lenses" in gather
    recover = next(line for line in out.splitlines() if "skysift recover" in line)
    assert "--trainset results/train/lens.h5" in recover
    lines = out.splitlines()
    mock_output = lines[lines.index("rule mock:") + 1]
    assert "catalog.fits" in mock_output and "known_lenses" not in mock_output


def test_index_reused_the_check_headers_and_wrote_shard_files(tiny_run):
    log = (tiny_run / "logs" / "survey_index.log").read_text()
    assert "headers of 2 of 2 tiles from results/tile_headers.json; reading 0" in log
    shards = json.loads((tiny_run / "results" / "index" / "shards.json").read_text())
    files = sorted(p.stem for p in (tiny_run / "results" / "index" / "shards").glob("*.fits"))
    assert files == sorted(s["shard"] for s in shards["shards"])
    assignment = Table.read(tiny_run / "results" / "index" / "assignment.fits")
    for s in shards["shards"]:
        rows = Table.read(tiny_run / "results" / "index" / "shards" / f"{s['shard']}.fits")
        lo, hi = s["rows"]
        assert np.array_equal(rows["index"], assignment["index"][lo:hi])
