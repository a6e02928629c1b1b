"""The review page's random sample in bins of score and its checks (skysift.review.sample),
the estimates from the graded sample (skysift.review.estimate) checked against a synthetic
catalog's truth, and the page and `skysift grades --sample` built from them."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from astropy.table import Table
from test_review import BIG, CONFIG, candidates_file, cutouts_file

from skysift.review import estimate, gallery, grades
from skysift.review import sample as sampling

QUANTILES = [0, 0.5, 0.9, 0.99, 1]


def catalog(n=20000, prevalence=0.02, seed=0):
    """Scores of a synthetic scored catalog and its truth: lenses score higher."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < prevalence
    scores = rng.normal(0, 1, n) + 3.0 * truth
    return scores, truth


def top_rows(scores, k):
    return np.argsort(-scores, kind="stable")[:k]


def test_random_count_makes_the_stated_fraction_of_the_page():
    assert sampling.random_count(50, 0.2) == 13  # 13 of 63: 0.206
    assert sampling.random_count(10, 0.2) == 3
    assert sampling.random_count(60, 0.25) == 20  # exactly a quarter of 80
    assert sampling.random_count(50, 0.0) == 0


def test_bins_are_quantiles_of_the_score_by_rank():
    scores = np.r_[np.arange(1000.0), np.nan]
    bins, edges = sampling.score_bins(scores, QUANTILES)
    assert bins[-1] == -1  # not scored, in no bin
    assert np.bincount(bins[:-1]).tolist() == [500, 400, 90, 10]
    assert edges.tolist() == [0, 500, 900, 990, 999]
    ties = sampling.score_bins(np.zeros(10), [0, 0.5, 1])[0]
    assert ties.tolist() == [0] * 5 + [1] * 5  # equal scores split by catalog row


def test_allocation_shares_equally_as_populations_allow():
    assert sampling.allocate(np.array([100, 2, 100]), 30).tolist() == [14, 2, 14]
    assert sampling.allocate(np.array([100, 2, 100]), 31).tolist() == [14, 2, 15]
    assert sampling.allocate(np.array([3, 0, 1]), 10).tolist() == [3, 0, 1]


def test_selection_is_stratified_weighted_disjoint_and_deterministic():
    scores, truth = catalog()
    top = top_rows(scores, 50)
    sel = sampling.select(scores, top, truth, QUANTILES, 40, 5, seed=3)
    rand = sel.rows[sel.source == "random"]
    checks = sel.rows[sel.source == "check"]
    assert len(rand) == 40 and len(checks) == 5 and (sel.source == "top").sum() == 50
    assert len(set(sel.rows)) == len(sel.rows)  # top K, random and checks disjoint
    assert not set(rand) & set(top) and truth[checks].all()
    bins, _ = sampling.score_bins(scores, QUANTILES)
    outside = np.ones(scores.size, bool)
    outside[top] = False
    for b in range(4):  # every bin drawn; its weights sum to its objects outside the top K
        mine = (sel.source == "random") & (sel.bin == b)
        assert mine.sum() >= 1 and (bins[sel.rows[mine]] == b).all()
        assert sel.weight[mine].sum() == pytest.approx(np.sum(outside & (bins == b)))
        assert sel.bin_population[b] == np.sum(outside & (bins == b))
    assert (sel.weight[sel.source == "top"] == 1).all()
    assert np.isnan(sel.weight[sel.source == "check"]).all()
    again = sampling.select(scores, top, truth, QUANTILES, 40, 5, seed=3)
    assert (again.rows == sel.rows).all() and (again.source == sel.source).all()
    other = sampling.select(scores, top, truth, QUANTILES, 40, 5, seed=4)
    assert set(other.rows[other.source == "random"]) != set(rand)
    # shuffled: the top K is not a block at the head of the page
    positions = np.flatnonzero(sel.source == "top")
    assert positions.max() >= 50 and positions.min() < 45
    alone = sampling.select(scores, top, None, QUANTILES, 0, 0, seed=3)
    assert (alone.rows == top).all()  # no sample: the ranked top K as before


def sample_rows(sel, scores):
    """The sample file's rows (text) of a selection, as write_sample writes them."""
    return [{"source": s, "score": repr(float(scores[r])), "bin": str(b),
             "bin_lo": repr(float(sel.bin_edges[b])), "bin_hi": repr(float(sel.bin_top[b])),
             "weight": "" if not np.isfinite(w) else repr(float(w)), "known": "0"}
            for r, s, b, w in zip(sel.rows, sel.source, sel.bin, sel.weight, strict=True)]


def test_estimates_are_unbiased_and_the_completeness_interval_covers_the_truth():
    """A scripted grader grades from the truth (A lens, N not). Over 60 draws of the sample
    from one synthetic catalog (20,000 objects, 1 % lenses), the Horvitz-Thompson estimates
    of the lenses above each threshold and of all lenses average to the true counts (within
    3 standard errors of the mean: unbiased), and the 95 % intervals of the completeness
    (a ratio of two such estimates) and of the total cover the truth in most draws."""
    scores, truth = catalog(prevalence=0.01)
    top = top_rows(scores, 100)
    above, completeness, covered = [], [], []
    for seed in range(60):
        sel = sampling.select(scores, top, truth, QUANTILES, 300, 0, seed=seed)
        grades_ = ["A" if truth[r] else "N" for r in sel.rows]
        comp = estimate.sample_report(sample_rows(sel, scores), grades_, 200, 0.95,
                                      seed)["completeness"]
        cuts = [t["score"] for t in comp["thresholds"]]
        true_above = [np.sum(truth & (scores >= c)) for c in cuts] + [truth.sum()]
        above.append([t["lenses_above"] for t in comp["thresholds"]]
                     + [comp["total_lenses"]["value"]])
        completeness.append([t["value"] for t in comp["thresholds"]])
        covered.append([lo <= n / truth.sum() <= hi for n, (lo, hi) in zip(
            true_above, (t["interval"] for t in comp["thresholds"]), strict=False)]
            + [comp["total_lenses"]["interval"][0] <= truth.sum()
               <= comp["total_lenses"]["interval"][1]])
    above, covered = np.array(above), np.array(covered)
    stderr = above.std(0) / np.sqrt(len(above))
    assert (np.abs(above.mean(0) - true_above) <= 3 * stderr + 1e-9).all()
    assert (stderr[-1] > 0) and covered.mean(0).min() >= 0.85  # nominal 0.95
    true = np.array(true_above[:-1]) / truth.sum()
    assert np.abs(np.mean(completeness, 0) - true).max() < 0.05  # the ratio's small bias
    assert true.min() < 0.6  # the top K's completeness (one threshold) is far from 1


def test_purity_per_bin_and_checks_recovery():
    scores, truth = catalog(n=4000, prevalence=0.05, seed=1)
    top = top_rows(scores, 30)
    sel = sampling.select(scores, top, truth, [0, 0.5, 1], 100, 6, seed=0)
    rows = sample_rows(sel, scores)
    for r, known in zip(rows, truth[sel.rows], strict=True):
        r["known"] = str(int(known))
    checks = np.flatnonzero(sel.source == "check")
    grades_ = ["B" if truth[r] else "N" for r in sel.rows]
    grades_[checks[0]] = "C"  # the graders miss one known lens, leave another ungraded
    grades_[checks[1]] = ""
    rep = estimate.sample_report(rows, grades_, 100, 0.95, 0)
    assert rep["checks"] == {"n": 6, "n_graded": 5, "n_called_lens": 4, "fraction": 0.8,
                             "interval": pytest.approx([0.376, 0.964], abs=1e-3)}
    for b in rep["purity_by_bin"]:
        mine = (sel.source == "random") & (sel.bin == b["bin"])
        assert b["n_graded"] == mine.sum() == 50
        assert b["purity"] == pytest.approx(truth[sel.rows[mine]].mean())
        assert b["interval"][0] <= b["purity"] <= b["interval"][1]
        assert b["lenses"] == pytest.approx(b["purity"] * b["population"])
    assert rep["n_graded"] == {"top": 30, "random": 100, "check": 5}


# --- the page and the grades read back, from a small catalog file -------------------------


def catalog_file(path, n=60, known=(5, 7, 9)):
    """A gathered catalog of n objects (index k, id BIG + k, score n - k: index 0 is best)."""
    t = Table({"index": np.arange(n, dtype=np.int64), "id": BIG + np.arange(n, dtype=np.int64),
               "ra": 10.0 + np.arange(n) / 100, "dec": -1.0 - np.arange(n) / 100,
               "tile": np.array(["a"] * n), "score_lens_cnn": (n - np.arange(n)).astype("f4"),
               "rank_lens_cnn": np.arange(1, n + 1, dtype=np.int64),
               "known_lens": np.isin(np.arange(n), known)})
    t.write(path, format="fits")
    return path


@pytest.fixture
def page(tmp_path):
    """The page of the 5 best of 60 objects, with 2 random objects and 2 checks."""
    n = 60
    cut = cutouts_file(tmp_path / "s0.h5", list(range(n)), [BIG + k for k in range(n)],
                       ["a"] * n)
    cands = candidates_file(tmp_path / "c.csv", [(k, BIG + k, "a", float(n - k))
                                                 for k in range(5)])
    cat = catalog_file(tmp_path / "catalog.fits", n)
    config = {**CONFIG, "seed": 11, "review": {"random_fraction": 0.25, "n_checks": 2,
                                                "score_bins": [0, 0.5, 1]}}
    argv = ["--config-json", json.dumps(config), "--task", "lens", "--candidates", str(cands),
            "--cutouts", str(cut), "--html", str(tmp_path / "lens.html"), "--sheet",
            str(tmp_path / "sheet.csv"), "--catalog", str(cat), "--sample",
            str(tmp_path / "sample.csv")]
    assert gallery.main(argv) == 0
    with open(tmp_path / "sample.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return tmp_path, config, rows


def test_page_mixes_sample_and_checks_and_hides_the_source(page):
    tmp_path, _, rows = page
    assert [r["source"] for r in rows].count("top") == 5
    assert [r["source"] for r in rows].count("random") == 2  # ceil(5 x 0.25 / 0.75)
    assert [r["source"] for r in rows].count("check") == 2
    assert {int(r["index"]) for r in rows if r["source"] == "check"} <= {5, 7, 9}
    assert [r["source"] for r in rows][:5] != ["top"] * 5  # shuffled
    text = (tmp_path / "lens.html").read_text()
    figs = re.findall(r'<figure [^>]*data-rank="(\d+)" data-index="(\d+)" data-id="(\d+)" '
                      r'data-known="(\d)" data-info="([^"]*)"', text)
    assert [(f[0], f[1], f[2]) for f in figs] == [(r["position"], r["index"], r["id"])
                                                  for r in rows]
    assert all(f[3] == "0" and "logit" not in f[4] for f in figs)  # no badge, no score
    grid = text.split('<div id="grid">')[1].split("</div>\n<table")[0]
    assert "logit" not in grid and 'class="known"' not in grid
    assert "logit" not in text.split('<table id="candidates">')[1]  # the table neither
    assert not re.search(r"\b(random|check|top)\b", grid)
    with open(tmp_path / "sheet.csv", newline="") as fh:
        sheet = list(csv.DictReader(fh))
    assert [(s["rank"], s["index"], s["id"]) for s in sheet] == [
        (r["position"], r["index"], r["id"]) for r in rows]
    assert all(s["score"] == "" for s in sheet)  # the sheet does not tell the source either


def test_grades_with_the_sample_report_top_purity_and_the_sample(page, tmp_path):
    _, config, rows = page
    filled = tmp_path / "filled.csv"
    with open(tmp_path / "sheet.csv", newline="") as fh:
        sheet = list(csv.DictReader(fh))
    for s, r in zip(sheet, rows, strict=True):  # every top object a lens, nothing else
        s["grade"] = "A" if r["source"] in ("top", "check") else "N"
    with open(filled, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(sheet[0]))
        w.writeheader()
        w.writerows(sheet)
    out = tmp_path / "purity.json"
    assert grades.main(["--config-json", json.dumps(config), "--grades", str(filled),
                        "--candidates", str(tmp_path / "sheet.csv"), "--sample",
                        str(tmp_path / "sample.csv"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["purity_over"] == "top" and res["counts"] == {"A": 5, "B": 0, "C": 0, "N": 0}
    est = res["sample"]
    assert est["checks"]["n_called_lens"] == 2 and est["n_graded"]["random"] == 2
    assert est["completeness"]["total_lenses"]["value"] == 5  # the random ones were N
    other = tmp_path / "other.csv"  # a sample file of another page: the join fails
    other.write_text((tmp_path / "sample.csv").read_text().replace(f",{rows[0]['id']},",
                                                                   f",{BIG + 999},"))
    assert grades.main(["--config-json", json.dumps(config), "--grades", str(filled),
                        "--sample", str(other), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def test_checks_fall_back_to_labelled_test_positives(tmp_path):
    """No known lens in the catalog: the checks are the task's labelled positives of the test
    split, never a training or validation positive, a negative or an unlabelled object."""
    from skysift.review.selection import labelled_test_positives

    n = 60
    cut = cutouts_file(tmp_path / "s0.h5", list(range(n)), [BIG + k for k in range(n)],
                       ["a"] * n)
    cands = candidates_file(tmp_path / "c.csv", [(k, BIG + k, "a", float(n - k))
                                                 for k in range(5)])
    cat = catalog_file(tmp_path / "catalog.fits", n, known=())
    Table({"index": np.arange(n, dtype=np.int64),
           "split": (np.arange(n) % 3).astype(np.uint8)}).write(tmp_path / "split.fits")
    lensed = [3, 6, 9, 12, 14, 17, 20, 23]  # 14, 17, 20, 23 in the test split (k % 3 == 2)
    labelled = np.arange(40)  # objects 40-59 unlabelled (47, 50 would be test positives)
    Table({"objid": BIG + labelled, "is_lens": np.isin(labelled, lensed).astype(np.int16)}
          ).write(tmp_path / "labels.fits")
    config = {**CONFIG, "seed": 3, "survey": {"labels": str(tmp_path / "labels.fits"),
                                              "labels_id_column": "objid"},
              "review": {"random_fraction": 0.25, "n_checks": 3, "score_bins": [0, 0.5, 1]}}
    got = labelled_test_positives(config, "lens", cat, tmp_path / "split.fits")
    assert got.tolist() == [14, 17, 20, 23]
    assert labelled_test_positives(config, "lens", cat, None) is None
    argv = ["--config-json", json.dumps(config), "--task", "lens", "--candidates", str(cands),
            "--cutouts", str(cut), "--html", str(tmp_path / "lens.html"), "--sheet",
            str(tmp_path / "sheet.csv"), "--catalog", str(cat), "--sample",
            str(tmp_path / "sample.csv"), "--split", str(tmp_path / "split.fits")]
    assert gallery.main(argv) == 0
    with open(tmp_path / "sample.csv", newline="") as fh:
        checks = [int(r["index"]) for r in csv.DictReader(fh) if r["source"] == "check"]
    assert len(checks) == 3 and set(checks) <= {14, 17, 20, 23}
    assert gallery.main(argv[:-2]) == 0  # without the split: no known lens, no checks
    with open(tmp_path / "sample.csv", newline="") as fh:
        assert [r for r in csv.DictReader(fh) if r["source"] == "check"] == []


@pytest.mark.parametrize("fmt", ["fits", "parquet"])
def test_scored_catalog_reads_per_shard_parts_as_the_one_file(tmp_path, fmt):
    """infer.catalog_format *_per_shard: the review reads the folder of parts, the same
    columns and values as the one catalog file."""
    whole = sampling.read_scored_catalog(catalog_file(tmp_path / "catalog.fits", 30),
                                         "score_lens_cnn")
    t = Table.read(tmp_path / "catalog.fits")
    (tmp_path / "parts").mkdir()
    t[:12].write(tmp_path / "parts" / f"s000.{fmt}", format=fmt)
    t[12:].write(tmp_path / "parts" / f"s001.{fmt}", format=fmt)
    parts = sampling.read_scored_catalog(tmp_path / "parts", "score_lens_cnn")
    for name in ("index", "ra", "dec", "score", "rank", "known"):
        np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name))
    assert parts.ids == whole.ids and parts.tile == whole.tile and parts.prob is None
