"""training_set.use auto: real labels lead, simulations carry scarce labels."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from skysift import config as skyconfig
from skysift.sim.mix import choose_use, resolve_use

TCFG = {"use": "auto", "auto_min_positives": 100, "auto_min_negatives": 100}


def test_auto_takes_labels_when_there_are_enough_of_both_classes():
    assert choose_use(TCFG, True, 100, 100)[0] == "labels"
    assert choose_use(TCFG, True, 99, 5000)[0] == "both"  # scarce positives
    assert choose_use(TCFG, True, 50, 0)[0] == "both"  # positives only: sims and real negatives
    assert choose_use(TCFG, True, None, None)[0] == "simulated"  # no labels table
    assert choose_use(TCFG, False, None, None)[0] == "labels"  # no simulator: labels only
    assert choose_use({**TCFG, "use": "simulated"}, True, 500, 500)[0] == "simulated"


def test_resolve_use_counts_the_task_labels(tmp_path):
    path = tmp_path / "labels.fits"
    ids = np.arange(300, dtype=np.int64) + 2**60
    Table({"objid": ids, "is_lens": (np.arange(300) < 40).astype(np.uint8),
           "is_merger": (np.arange(300) < 150).astype(np.uint8)}).write(path)
    cfg = skyconfig.load(json_text='{"survey": {"kind": "files", "tiles": "t/{tile}_{band}.fits", '
                                   f'"catalog": "c.fits", "labels": "{path}"}}}}')
    lens = resolve_use(cfg, "lens")["training_set"]
    merger = resolve_use(cfg, "merger")["training_set"]
    assert (lens["use"], lens["use_requested"]) == ("both", "auto")  # 40 positives: scarce
    assert merger["use"] == "labels"  # 150 positives, 150 negatives
    assert cfg["training_set"]["use"] == "auto"  # the caller's config is left as it was
    cfg["survey"]["labels"] = None
    assert resolve_use(cfg, "lens")["training_set"]["use"] == "simulated"
