"""More like this (skysift similar): neighbours of a query found in synthetic embeddings, ids
and catalog rows carried through shard files, a linear probe ranking a separable set, the
step's outputs per config and its errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift import config as cfg
from skysift import plan
from skysift.io import provenance
from skysift.review.probe import map_rows, probe_labels, probe_logits, train_probe
from skysift.review.similar import main, merge_lists, neighbours, read_embeddings, unit_rows
from skysift.score.scoring import write_embeddings
from skysift.survey.grades import SHEET_COLUMNS

COLUMN = "score_lens_baseline3"  # the demo recipe's primary lens model
WIDTH = 16


def clustered(n: int, n_lens: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, WIDTH) embeddings: n_lens rows near one direction (lenses), the rest spread over
    the other directions; and the 0/1 lens flags."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, WIDTH)).astype(np.float32)
    x[:, 0] = np.abs(x[:, 0]) * 0.2
    lens = np.zeros(n, bool)
    lens[rng.choice(n, n_lens, replace=False)] = True
    x[lens] = rng.normal(scale=0.15, size=(n_lens, WIDTH))
    x[lens, 0] = 3.0
    return x, lens


def test_neighbours_of_a_query_are_its_cluster():
    x, lens = clustered(400, 12)
    q = np.flatnonzero(lens)[:1]
    found, dist = neighbours(unit_rows(x), q, k=11, n_neighbors=10, seed=1)
    assert set(found[0].tolist()) == set(np.flatnonzero(lens).tolist()) - {int(q[0])}
    assert np.all(np.diff(dist[0]) >= 0) and q[0] not in found[0]
    pos, d, query = merge_lists(np.array([[5, 7, -1], [7, 9, 5]]),
                                np.array([[0.1, 0.3, np.inf], [0.2, 0.4, 0.05]]))
    assert pos.tolist() == [5, 7, 9] and d.tolist() == [0.05, 0.2, 0.4]
    assert query.tolist() == [1, 1, 1]


def test_probe_on_a_handful_of_positives_ranks_separable_objects():
    x, lens = clustered(2000, 40, seed=3)
    x = unit_rows(x)
    rows, y = probe_labels(len(x), np.flatnonzero(lens)[:10], np.zeros(0, np.int64), 300,
                           seed=4)
    assert y.sum() == 10 and len(rows) == 310 and len(np.unique(rows)) == 310
    logit = probe_logits(train_probe(x[rows], y, 1.0, 0), x)
    test = np.setdiff1d(np.arange(len(x)), rows)
    order = np.argsort(-logit[test])
    n_pos = int(lens[test].sum())
    assert n_pos >= 20 and lens[test][order[:n_pos]].all()  # every held-out lens ranks first
    assert len(map_rows(len(x), np.array([1, 5]), 50, seed=0)) in (51, 52)


def _shard(path, index, ids, x):
    """A shard's embeddings file, by the scoring path's own writer."""
    write_embeddings(path, {"index": index, "id": ids}, {COLUMN: x},
                     provenance(cfg.load(None, None, []), step="infer"))


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Two shard files (rows not in index order, string ids, unscored NaN rows) and a
    catalog whose score is unrelated to the embeddings."""
    tmp = tmp_path_factory.mktemp("similar")
    x, lens = clustered(300, 10, seed=5)
    index = np.arange(300, dtype=np.int64)
    ids = np.array([f"obj-{9000 - i}".encode() for i in index])
    x[7] = np.nan  # not scored
    perm = np.random.default_rng(6).permutation(300)
    a, b = np.sort(perm[:150])[::-1], perm[150:]
    _shard(tmp / "s0001.h5", index[a], ids[a], x[a])
    _shard(tmp / "s0000.h5", index[b], ids[b], x[b])
    cat = Table({"index": index, "id": ids, "ra": 150 + index * 1e-3, "dec": np.full(300, 2.0),
                 "tile": np.array([b"m000"] * 300), COLUMN: np.linspace(-5, 5, 300),
                 "known_lens": lens})
    cat.write(tmp / "catalog.fits")
    return tmp, ids, lens


def _run(tmp, ids, lens, **similar):
    q = int(np.flatnonzero(lens)[0])
    conf = {"infer": {"embeddings": True},
            "similar": {"queries": [ids[q].decode()], "k": 9, "map": "tsne",
                        "map_points": 50, "probe_random_negatives": 100, **similar}}
    argv = ["--config-json", json.dumps(conf), "--task", "lens", "--embeddings",
            str(tmp / "s0001.h5"), str(tmp / "s0000.h5"), "--catalog", str(tmp / "catalog.fits"),
            "--out", str(tmp / "lens.csv"), "--probe", str(tmp / "probe.fits"),
            "--map", str(tmp / "map.png")]
    return main(argv), q


def test_cli_lists_the_query_s_cluster_with_ids_and_catalog_rows(survey):
    tmp, ids, lens = survey
    rc, q = _run(tmp, ids, lens)
    assert rc == 0
    with open(tmp / "lens.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    index = [int(r["index"]) for r in rows]
    assert set(index) == set(np.flatnonzero(lens).tolist()) - {q}
    assert [r["id"] for r in rows] == [f"obj-{9000 - i}" for i in index]
    assert all(r["query_index"] == str(q) and r["query_id"] == ids[q].decode() for r in rows)
    assert [float(r[COLUMN]) for r in rows] == pytest.approx(np.linspace(-5, 5, 300)[index])
    assert [int(r["rank"]) for r in rows] == list(range(1, 10))
    assert all(r["known_lens"] == "1" for r in rows)
    with fits.open(tmp / "probe.fits") as hdul:
        t = hdul[1].data
        assert len(t) == 299 and 7 not in t["index"]  # the unscored object has no embedding
        by_index = dict(zip(t["index"].tolist(), t["id"].tolist(), strict=True))
        assert by_index[42] == ids[42].decode()
        top = t["index"][np.argsort(t["rank_probe_lens"])[:10]]
        assert set(top.tolist()) == set(np.flatnonzero(lens).tolist())
    assert (tmp / "map.png").read_bytes()[:4] == b"\x89PNG"


def test_a_grades_are_queries(survey, tmp_path):
    tmp, ids, lens = survey
    q = int(np.flatnonzero(lens)[1])
    sheet = tmp_path / "grades.csv"
    with open(sheet, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(SHEET_COLUMNS)
        w.writerow([1, q, ids[q].decode(), 0, 0, 0, "A"])
        w.writerow([2, 3, ids[3].decode(), 0, 0, 0, "N"])
    rc, _ = _run(tmp, ids, lens, queries=[], grades=[str(sheet)], map="none")
    assert rc == 0
    with open(tmp / "lens.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["query_index"] for r in rows} == {str(q)}


def test_errors_name_the_config_key(survey, capsys):
    tmp, ids, _ = survey
    base = ["--task", "lens", "--embeddings", str(tmp / "s0000.h5"), "--catalog",
            str(tmp / "catalog.fits"), "--out", str(tmp / "bad.csv")]
    cases = [({"similar": {"queries": ["obj-9000"]}}, "infer.embeddings: true"),
             ({"infer": {"embeddings": True}}, "similar.queries"),
             ({"infer": {"embeddings": True}, "similar": {"queries": ["nope"]}},
              "similar.queries: ids ['nope']")]
    for conf, message in cases:
        assert main(["--config-json", json.dumps(conf), *base]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp / "bad.csv").exists()
    x = read_embeddings([tmp / "s0000.h5", tmp / "s0001.h5"], COLUMN)
    assert np.all(np.diff(x.index) > 0) and np.allclose(np.linalg.norm(x.vectors, axis=1), 1)


def test_rule_all_asks_for_similar_only_when_configured():
    config = cfg.load(None, None, [])
    assert plan.similar_targets(config) == []
    config["similar"]["queries"] = ["123"]
    assert set(plan.similar_targets(config)) == {
        "results/similar/lens.csv", "results/similar/probe_lens.fits",
        "results/review/similar_lens_map.png", "results/review/similar_lens.html",
        "results/review/similar_lens_grades.csv"}
    config["similar"]["tasks"] = ["galaxy"]
    with pytest.raises(Exception, match="similar.tasks"):
        plan.similar_targets(config)
