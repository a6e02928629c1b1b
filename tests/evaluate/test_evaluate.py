"""The evaluate step on a hand-built catalog, split and labels table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from skysift import metrics
from skysift.errors import SurveyError
from skysift.evaluate import evaluate
from skysift.ids import id_keys, match_ids

BIG = 2**53  # float64 cannot tell BIG + 2k + 1 from its neighbours
N_BOOT, CI, SEED = 40, 0.9, 42

# Five test objects, then one train and one val object whose scores would change every
# metric if they leaked in. Lens: labelled test scores [0.1, 0.4, 0.35, 0.8] with labels
# [0, 0, 1, 1] -> AUROC 3/4, TPR0 1/2 (0.35 is below the top negative 0.4), TPR10 1 (two
# negatives); the fifth test object is not in the labels table.
SPLIT = [2, 2, 2, 2, 2, 0, 1]
LENS_SCORE = [0.1, 0.4, 0.35, 0.8, 0.9, -5.0, 5.0]
LENS_LABEL = [0, 0, 1, 1, None, 1, 0]
# Merger: labelled test rows 0, 1, 3 = scores [0.2, 0.2, 0.1], labels [1, 0, 0]: the positive
# ties the top negative -> AUROC (0.5 + 1) / 2 = 3/4, TPR0 0, TPR10 1; row 2 has a blank label.
MERGER_SCORE = [0.2, 0.2, 0.7, 0.1, 0.0, -5.0, 5.0]
MERGER_LABEL = [1, 0, None, 0, None, 1, 0]
HAND = {
    "lens": dict(scores=[0.1, 0.4, 0.35, 0.8], labels=[0, 0, 1, 1], auroc=0.75, tpr0=0.5,
                 tpr10=1.0, n_pos=2, n_neg=2, n_unlabelled=1),
    "merger": dict(scores=[0.2, 0.2, 0.1], labels=[1, 0, 0], auroc=0.75, tpr0=0.0, tpr10=1.0,
                   n_pos=1, n_neg=2, n_unlabelled=2),
}
TASKS = [{"name": "lens", "label": "is_lens"}, {"name": "merger", "label": "is_merger"}]
FIGURES = ("completeness", "purity", "reliability")


def write_inputs(tmp_path, ids, labels_name="truth.fits", extra_label_ids=(),
                 tasks=TASKS, scores=None):
    """Catalog, split and labels files; returns (config JSON, catalog path, split path)."""
    n = len(ids)
    scores = scores or {"score_lens_cnn": LENS_SCORE, "score_merger_cnn": MERGER_SCORE}
    catalog = Table({"index": np.arange(n, dtype=np.int64), "id": ids,
                     "ra": np.linspace(35, 35.1, n), "dec": np.full(n, -5.0),
                     "tile": np.array(["t0"] * n), "flags": np.zeros(n, np.uint8)})
    for name, values in scores.items():
        catalog[name] = np.asarray(values, dtype=np.float32)
    catalog.write(tmp_path / "catalog.fits")
    # the split table covers the whole user catalog, shuffled, with an object not in catalog
    split = Table({"index": np.array([6, 3, 0, 99, 5, 2, 1, 4], dtype=np.int64),
                   "split": np.array([SPLIT[i] if i < n else 2 for i in (6, 3, 0, 99, 5, 2, 1, 4)],
                                     dtype=np.uint8)})
    split.write(tmp_path / "split.fits")
    # labels: rows 0-3, 5, 6 (not row 4), shuffled, plus ids absent from the catalog
    rows = [6, 2, 0, 5, 3, 1]
    label_ids = [ids[i] for i in rows] + list(extra_label_ids)
    extra = len(extra_label_ids)
    labels = Table({"objid": label_ids})
    for name, values in (("is_lens", LENS_LABEL), ("is_merger", MERGER_LABEL)):
        vals = [values[i] for i in rows] + [1] * extra
        labels[name] = MaskedColumn([0 if v is None else v for v in vals],
                                    mask=[v is None for v in vals], dtype=np.int16)
    labels["all_negative"] = np.zeros(len(label_ids), dtype=np.int16)
    labels.write(tmp_path / labels_name)
    cfg = {"seed": SEED, "survey": {"labels": str(tmp_path / labels_name),
                                    "labels_id_column": "objid"},
           "tasks": tasks, "evaluate": {"n_bootstrap": N_BOOT, "ci": CI},
           "models": [{"name": "cnn", "architecture": "baseline3"}]}
    return json.dumps(cfg), tmp_path / "catalog.fits", tmp_path / "split.fits"


def run_main(tmp_path, cfg_json, catalog, split):
    return evaluate.main(["--config-json", cfg_json, "--catalog", str(catalog),
                          "--split", str(split), "--out", str(tmp_path / "out" / "metrics.json"),
                          "--roc", str(tmp_path / "out" / "roc.png"),
                          *(a for fig in FIGURES for a in (f"--{fig}",
                                                           str(tmp_path / "out" / f"{fig}.png")))])


def check_hand_metrics(tmp_path, n_labels_unmatched):
    out = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert out["split"] == "test"
    assert out["provenance"]["seed"] == SEED and "config_hash" in out["provenance"]
    assert set(out["tasks"]) == {"lens", "merger"}
    for task, hand in HAND.items():
        got = out["tasks"][task]
        for name in ("auroc", "tpr0", "tpr10"):
            assert got[name] == pytest.approx(hand[name], abs=1e-12), (task, name)
        boot = metrics.bootstrap(hand["scores"], hand["labels"], N_BOOT, CI,
                                 evaluate.task_seed(SEED, task))
        for name in ("auroc", "tpr0", "tpr10"):
            assert got[f"{name}_ci"] == pytest.approx([boot[name]["lo"], boot[name]["hi"]])
            assert got[f"{name}_ci"][0] <= got[name] <= got[f"{name}_ci"][1]
        counts = {k: got[k] for k in ("n_pos", "n_neg", "n_unlabelled", "n_test", "n_catalog")}
        assert counts == {"n_pos": hand["n_pos"], "n_neg": hand["n_neg"],
                          "n_unlabelled": hand["n_unlabelled"], "n_test": 5, "n_catalog": 7}
        assert got["score_column"] == f"score_{task}_cnn"
        assert got["model"] == "cnn" and got["primary"] is True
        assert out["models"][task]["cnn"] == got and out["primary"][task] == "cnn"
        assert got["tpr_fpr1e-3"] == got["tpr0"]  # fewer than 1000 negatives
        assert got["n_labels_unmatched"] == n_labels_unmatched
        assert (got["n_bootstrap"], got["ci"]) == (N_BOOT, CI)
    png = (tmp_path / "out" / "roc.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert not list((tmp_path / "out").glob("*.partial"))


def test_int_ids_above_2_53_joined_exactly(tmp_path, capsys):
    ids = np.array([BIG + k for k in range(7)], dtype=np.int64)
    cfg, catalog, split = write_inputs(tmp_path, ids, labels_name="truth.csv",
                                       extra_label_ids=[BIG + 101])
    assert run_main(tmp_path, cfg, catalog, split) == 0
    check_hand_metrics(tmp_path, n_labels_unmatched=1)
    assert "evaluate: 2 models of 2 tasks on 5 test objects" in capsys.readouterr().err


def test_string_ids_joined_exactly(tmp_path):
    ids = np.array(["obj-1", "obj-10", "OBJ-1", "obj-01", "obj-2", "x", "y y"])
    cfg, catalog, split = write_inputs(tmp_path, ids, extra_label_ids=["obj-3", "obj-4"])
    assert run_main(tmp_path, cfg, catalog, split) == 0
    check_hand_metrics(tmp_path, n_labels_unmatched=2)


def test_single_class_test_split_gives_null_metrics_and_a_warning(tmp_path, capsys):
    tasks = [{"name": "lens", "label": "is_lens"}, {"name": "merger", "label": "all_negative"}]
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7) + 10, tasks=tasks)
    assert run_main(tmp_path, cfg, catalog, split) == 0
    text = (tmp_path / "out" / "metrics.json").read_text()
    assert "NaN" not in text
    merger = json.loads(text)["tasks"]["merger"]
    assert merger["auroc"] is None and merger["tpr0"] is None and merger["tpr10"] is None
    assert merger["auroc_ci"] == [None, None]
    assert (merger["n_pos"], merger["n_neg"]) == (0, 4)
    assert json.loads(text)["tasks"]["lens"]["auroc"] == 0.75
    assert "task merger: the test split has 0 positives and 4 negatives" in capsys.readouterr().err
    assert (tmp_path / "out" / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_score_column_exits_2_and_writes_nothing(tmp_path, capsys):
    tasks = TASKS + [{"name": "ring", "label": "is_lens"}]
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7), tasks=tasks)
    cfg = json.loads(cfg)
    cfg["evaluate"]["prevalence"] = {"lens": 1e-3, "merger": 1e-2, "ring": 1e-3}
    assert run_main(tmp_path, json.dumps(cfg), catalog, split) == 2
    err = capsys.readouterr().err
    assert "score_ring" in err and "ring" in err and "Traceback" not in err
    out_dir = tmp_path / "out"
    assert not (out_dir / "metrics.json").exists() and not (out_dir / "roc.png").exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_labels_null_exits_2_saying_labels_are_needed(tmp_path, capsys):
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7))
    cfg = json.loads(cfg)
    cfg["survey"].update(kind="files", labels=None)  # a mock's null labels are its truth
    assert run_main(tmp_path, json.dumps(cfg), catalog, split) == 2
    assert "evaluation needs labels" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_bad_labels_tables_exit_2_naming_the_problem(tmp_path, capsys):
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7))
    labels = Table.read(tmp_path / "truth.fits")
    bad = labels.copy()
    bad["is_lens"][0] = 2
    bad.write(tmp_path / "truth.fits", overwrite=True)
    assert run_main(tmp_path, cfg, catalog, split) == 2
    assert "is_lens" in capsys.readouterr().err
    dup = labels.copy()
    dup["objid"][1] = dup["objid"][0]
    dup.write(tmp_path / "truth.fits", overwrite=True)
    assert run_main(tmp_path, cfg, catalog, split) == 2
    assert "more than once" in capsys.readouterr().err
    fl = labels.copy()
    fl["objid"] = fl["objid"].astype(float)
    fl.write(tmp_path / "truth.fits", overwrite=True)
    assert run_main(tmp_path, cfg, catalog, split) == 2
    assert "must be integers or strings" in capsys.readouterr().err


def test_match_ids_is_exact_and_mixes_int_and_text():
    big = np.array([BIG, BIG + 1, BIG + 2, 7], dtype=np.int64)
    ref = np.array([BIG + 2, BIG + 1, 8], dtype=np.int64)
    assert match_ids(big, ref).tolist() == [-1, 1, 0, -1]
    text = id_keys(np.array([b"9007199254740993", b"7"]))
    assert match_ids(text, big).tolist() == [1, 3]
    assert match_ids(np.array(["a"]), np.array([], dtype=str)).tolist() == [-1]
    with pytest.raises(SurveyError, match="integers or strings"):
        id_keys(np.array([1.0, 2.0]))


def test_task_seed_is_stable_and_differs_between_tasks():
    assert evaluate.task_seed(42, "lens") == evaluate.task_seed(42, "lens")
    assert len({evaluate.task_seed(42, "lens"), evaluate.task_seed(42, "merger"),
                evaluate.task_seed(43, "lens")}) == 3
    assert 0 <= evaluate.task_seed(0, "x") < 2**63


def test_every_model_is_evaluated_with_the_same_resamples(tmp_path):
    scores = {"score_lens_cnn": LENS_SCORE, "score_merger_cnn": MERGER_SCORE,
              "score_lens_inv": [-v for v in LENS_SCORE]}
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7), scores=scores)
    cfg = json.loads(cfg)
    cfg["models"] = [{"name": "cnn", "architecture": "baseline3"},
                     {"name": "inv", "architecture": "d4", "tasks": ["lens"], "primary": True}]
    assert run_main(tmp_path, json.dumps(cfg), catalog, split) == 0
    out = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert out["primary"] == {"lens": "inv", "merger": "cnn"}
    assert set(out["models"]["lens"]) == {"cnn", "inv"} and set(out["models"]["merger"]) == {"cnn"}
    inv, cnn = out["models"]["lens"]["inv"], out["models"]["lens"]["cnn"]
    assert out["tasks"]["lens"] == inv and inv["auroc"] == pytest.approx(0.25)
    assert cnn["auroc"] == 0.75 and cnn["bootstrap_seed"] == inv["bootstrap_seed"]


def test_tpr_at_fpr_admits_floor_of_fpr_times_negatives():
    rng = np.random.default_rng(0)
    neg = rng.normal(size=3000)
    top = np.sort(neg)[::-1]
    # positives between the 3rd and 4th highest negatives: 3 false positives allowed at 1e-3
    pos = np.full(10, (top[2] + top[3]) / 2)
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(10), np.zeros(3000)].astype(int)
    assert metrics.tpr_at_fpr(scores, labels, 1e-3) == 1.0
    assert metrics.tpr_fpr1e3(scores, labels) == 1.0
    assert metrics.tpr_at_fpr(scores, labels, 0.9e-3) == 0.0  # floor(2.7) = 2 allowed
    assert metrics.tpr_at_fpr(scores, labels, 0.0) == metrics.tpr0(scores, labels)
    assert np.isnan(metrics.tpr_at_fpr(np.ones(2), np.ones(2, int), 1e-3))
    boot = metrics.bootstrap(scores, labels, 5, 0.9, 1, metrics.ALL_METRICS)
    assert set(boot) == {"auroc", "tpr0", "tpr10", "tpr_fpr1e-3"}


def test_binned_completeness_purity_and_calibration_by_hand(tmp_path, capsys):
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7) + 100)
    labels = Table.read(tmp_path / "truth.fits")
    # lens positives: row 2 (score 0.35, theta 0.7) and row 3 (score 0.8, theta 1.7)
    theta = {102: 0.7, 103: 1.7, 105: 2.0}
    labels["theta_e_arcsec"] = [theta.get(int(i), np.nan) for i in labels["objid"]]
    labels.write(tmp_path / "truth.fits", overwrite=True)
    cfg = json.loads(cfg)
    cfg["evaluate"]["completeness_bins"] = [
        {"task": "lens", "column": "theta_e_arcsec", "edges": [0.5, 1, 1.5, 2], "name": "theta"},
        {"task": "merger", "column": "merger_stage", "edges": None, "name": "stage"},
        {"task": "ring", "column": "nothing", "edges": None, "name": "skipped"}]
    assert run_main(tmp_path, json.dumps(cfg), catalog, split) == 0
    assert "completeness by stage unavailable: column 'merger_stage'" in capsys.readouterr().err
    out = json.loads((tmp_path / "out" / "metrics.json").read_text())
    lens = out["tasks"]["lens"]
    # two test negatives and FPR 0.01 admit no false positive: threshold = top negative 0.4
    comp = lens["completeness"]
    assert comp["threshold_logit"] == pytest.approx(0.4) and comp["tpr"] == 0.5
    bins = comp["bins"]["theta"]
    assert [(b["n_pos"], b["n_detected"]) for b in bins["bins"]] == [(1, 0), (0, 0), (1, 1)]
    assert bins["bins"][1]["completeness"] is None and bins["n_unbinned"] == 0
    stage = out["tasks"]["merger"]["completeness"]["bins"]["stage"]
    assert stage["available"] is False and "merger_stage" in stage["reason"]
    assert set(comp["bins"]) == {"theta"}
    pur = lens["purity"]
    assert pur["prevalence"] == 0.001
    assert pur["tpr0"]["purity"] == 1.0 and pur["tpr0"]["tpr"] == 0.5
    # TPR10 admits 9 false positives: everything is selected, so purity is the prevalence
    assert (pur["tpr10"]["tpr"], pur["tpr10"]["fpr"]) == (1.0, 1.0)
    assert pur["tpr10"]["purity"] == pytest.approx(0.001)
    assert pur["tpr10"]["threshold_logit"] is None  # -inf is not JSON
    cal = lens["calibration"]
    assert cal["prevalence_test"] == 0.5 and cal["binning"] == "equal_count"
    assert sum(b["n"] for b in cal["bins"]) == 4 and cal["ece"] > 0
    for fig in ("roc", *FIGURES):
        assert (tmp_path / "out" / f"{fig}.png").read_bytes().startswith(b"\x89PNG")


def test_bad_completeness_bins_exit_2(tmp_path, capsys):
    cfg, catalog, split = write_inputs(tmp_path, np.arange(7))
    cfg = json.loads(cfg)
    cfg["evaluate"]["completeness_bins"] = [
        {"task": "lens", "column": "x", "edges": [1, 0.5], "name": "x"}]
    assert run_main(tmp_path, json.dumps(cfg), catalog, split) == 2
    assert "evaluate.completeness_bins[0].edges" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()
