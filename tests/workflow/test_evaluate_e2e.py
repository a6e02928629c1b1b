"""The evaluate step of the tiny real run: binned completeness, purity, calibration, figures."""

from __future__ import annotations

import json

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("roc", "completeness", "purity", "reliability")


@pytest.fixture(scope="module")
def metrics_json(tiny_run):
    return json.loads((tiny_run / "results" / "metrics.json").read_text())


def test_figures_are_valid_pngs(tiny_run):
    for name in FIGURES:
        path = tiny_run / "results" / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, path
        assert not path.with_name(path.name + ".partial").exists()


def test_completeness_bins_count_every_positive(metrics_json):
    for task, names in (("lens", ("einstein_radius", "arc_snr")),
                        ("merger", ("mass_ratio", "stage", "tidal_snr"))):
        for model, res in metrics_json["models"][task].items():
            comp = res["completeness"]
            assert comp["fpr_target"] == 0.01
            assert comp["fpr"] <= 0.01 or comp["n_fp"] == 0
            for name in names:
                block = comp["bins"][name]
                assert block["available"] is True, (task, model, name)
                assert block["n_pos"] == res["n_pos"]
                n_binned = sum(b["n_pos"] for b in block["bins"])
                assert n_binned + block["n_unbinned"] == res["n_pos"]
                assert sum(b["n_detected"] for b in block["bins"]) <= block["n_detected"]
                assert block["n_detected"] == round(comp["tpr"] * res["n_pos"])
                for b in block["bins"]:
                    if b["n_pos"]:
                        lo, hi = b["completeness_ci"]
                        assert lo <= b["completeness"] == b["n_detected"] / b["n_pos"] <= hi
    ratio = metrics_json["tasks"]["merger"]["completeness"]["bins"]["mass_ratio"]
    assert [b["name"] for b in ratio["bins"]] == ["minor", "major"]
    assert ratio["n_unbinned"] == 0  # every mock merger has a ratio in (0, 1]
    tidal = metrics_json["tasks"]["merger"]["completeness"]["bins"]["tidal_snr"]
    assert tidal["n_unbinned"] == 0 and tidal["bins"][0]["lo"] == 0  # pairs: tidal S/N 0
    theta = metrics_json["tasks"]["lens"]["completeness"]["bins"]["einstein_radius"]
    assert theta["n_unbinned"] == 0 and theta["bins"][0]["lo"] == 0.5


def test_purity_and_calibration_blocks(metrics_json):
    for task, res in metrics_json["tasks"].items():
        pur = res["purity"]
        assert pur["prevalence"] == {"lens": 0.001, "merger": 0.01}[task]
        for point in ("tpr0", "tpr10", "completeness_fpr"):
            op = pur[point]
            t, f, pi = op["tpr"], op["fpr"], pur["prevalence"]
            if t or f:
                assert op["purity"] == pytest.approx(t * pi / (t * pi + f * (1 - pi)))
        assert pur["tpr0"]["tpr"] == pytest.approx(res["tpr0"])
        assert pur["tpr10"]["tpr"] == pytest.approx(res["tpr10"])
        cal = res["calibration"]
        n_labelled = res["n_pos"] + res["n_neg"]
        assert cal["prevalence_test"] == pytest.approx(res["n_pos"] / n_labelled)
        assert 0 <= cal["ece"] <= 1 and sum(b["n"] for b in cal["bins"]) == n_labelled
        lo, hi = cal["ece_ci"]
        assert 0 <= lo <= hi <= 1


def test_metrics_are_those_of_the_whole_catalog_read_at_once(tiny_run, metrics_json,
                                                              monkeypatch):
    """Evaluate keeps only the test rows, read in blocks (evaluate.inputs.read_test_rows):
    its metrics are those of the former read, the whole catalog and then its test rows."""
    import numpy as np
    import yaml
    from conftest import TINY

    from skysift.config import deep_update, load
    from skysift.evaluate import evaluate as ev
    from skysift.evaluate.inputs import read_catalog, read_labels, split_of
    from skysift.ids import match_ids
    from skysift.modelspec import model_specs

    merged = yaml.safe_load((tiny_run / "config" / "config.yaml").read_text())
    deep_update(merged, yaml.safe_load(TINY.read_text()))
    cfg = load(json_text=json.dumps(merged))
    monkeypatch.chdir(tiny_run)  # the survey's paths are relative to the run
    specs = model_specs(cfg)
    catalog = read_catalog("results/catalog.fits", {s.column: s.column for s in specs})
    test = split_of(np.asarray(catalog["index"]), "results/split.fits") == 2
    keys, values, _ = read_labels(cfg)
    pos = match_ids(catalog["id"], keys)[test]
    for spec in specs:
        labels = np.where(pos >= 0, values[spec.task][np.maximum(pos, 0)], np.nan)
        scores = np.asarray(catalog[spec.column], np.float64)[test]
        want = ev.evaluate_task(scores, labels, cfg["evaluate"]["n_bootstrap"],
                                cfg["evaluate"]["ci"], ev.task_seed(cfg["seed"], spec.task))
        got = metrics_json["models"][spec.task][spec.name]
        assert got["n_catalog"] == len(catalog)
        for name in ("n_test", "n_pos", "n_neg", "n_unlabelled", "auroc", "auroc_ci", "tpr0",
                     "tpr0_ci", "tpr10", "tpr10_ci"):
            assert got[name] == ev.json_safe(want[name]), (spec.task, spec.name, name)
