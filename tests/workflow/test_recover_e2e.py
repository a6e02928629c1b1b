"""End to end on the shared tiny run: known-lens recovery, one header read, shard files."""

from __future__ import annotations

import json

import numpy as np
import yaml
from astropy.table import Table
from conftest import REPO, TINY

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
    assert all(s in ("recovered", "scored-below-top-k", "rejected") for s in on["status"])
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
    summary = json.loads((tiny_run / "results" / "known_lenses.json").read_text())
    # the ranks are gather's survey-wide rank_* of the primary lens model, not re-computed
    rank_col = summary["ranked_by"].replace("score_", "rank_", 1)
    by_id = dict(zip(np.asarray(catalog["id"]).astype(np.int64).tolist(),
                     np.asarray(catalog[rank_col]).tolist(), strict=True))
    assert [by_id[int(i)] for i in scored["id"]] == np.asarray(scored["rank"]).tolist()
    assert summary["n_known"] == n_listed and summary["n_off_survey"] == 2
    assert summary["n_matched"] == n_listed - 2
    assert summary["n_in_top_k"] + summary["n_below_top_k"] + summary["n_rejected"] == \
        summary["n_matched"]
    assert summary["n_catalog_scored"] == len(catalog)
    f = summary["recovered_fraction"]
    assert f["lo"] <= f["value"] <= f["hi"] and f["n"] == n_listed - 2


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
