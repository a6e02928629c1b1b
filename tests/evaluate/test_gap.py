"""The sim→real gap: simulated test rows of a model's training set beside the real ones."""

from __future__ import annotations

import json

import pytest

from skysift.errors import DataError
from skysift.evaluate.gap import attach_simulated, gap


def test_gap_is_simulated_minus_real_where_both_exist():
    real = {"auroc": 0.8, "tpr0": 0.1, "tpr10": None}
    sim = {"auroc": 0.95, "tpr0": 0.4, "tpr10": 0.7}
    assert gap(real, sim) == pytest.approx({"auroc": 0.15, "tpr0": 0.3})
    assert gap(real, None) is None and gap(real, {"auroc": None}) is None


def test_attach_reads_each_model_metrics_and_reports_the_gap(tmp_path):
    results = {"lens": {"cnn": {"auroc": 0.8, "tpr0": 0.1, "tpr10": 0.3}}}
    path = tmp_path / "cnn.metrics.json"
    path.write_text(json.dumps({"task": "lens", "model": "cnn", "selected_on": "labelled",
                                "test": {"simulated": {"auroc": 0.9, "tpr0": 0.5,
                                                       "tpr10": 0.6}}}))
    other = tmp_path / "other.metrics.json"  # a model evaluate does not know: ignored
    other.write_text(json.dumps({"task": "merger", "model": "cnn", "test": {}}))
    lines = attach_simulated(results, [path, other])
    res = results["lens"]["cnn"]
    assert res["selected_on"] == "labelled" and res["simulated_test"]["auroc"] == 0.9
    assert res["sim_to_real_gap"] == pytest.approx({"auroc": 0.1, "tpr0": 0.4, "tpr10": 0.3})
    assert len(lines) == 1 and "gap +0.100" in lines[0]
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="unreadable model metrics"):
        attach_simulated(results, [tmp_path / "bad.json"])
