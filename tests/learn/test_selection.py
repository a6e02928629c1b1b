"""Real labels lead: labelled validation rows decide; simulated rows are reported beside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skysift.learn import trainer as trainer_mod
from skysift.learn.loader import Source, TrainData
from skysift.learn.selection import decisive_rows, group_ranking, ranking
from skysift.learn.trainer import Trainer
from skysift.sim.trainfile import HARD, LABELLED, REAL, SIMULATED

SIZE = 16


class _Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)) * self.w


def _data(val_origin: np.ndarray, y_val: np.ndarray) -> TrainData:
    n = 8
    return TrainData(sources=[Source("unused.h5", np.arange(n), np.r_[np.ones(4), np.zeros(4)]
                                     .astype(np.float32))],
                     x_val=torch.zeros(len(y_val), 3, SIZE, SIZE),
                     y_val=torch.from_numpy(y_val.astype(np.float32)), shape=(3, SIZE, SIZE),
                     attrs={}, n_original=n, n_augmented=0, val_origin=val_origin)


def test_decisive_rows_are_the_labelled_ones_when_they_hold_both_classes():
    y = np.array([1, 0, 1, 0, 1, 0])
    origin = np.array([LABELLED, LABELLED, SIMULATED, REAL, SIMULATED, HARD], np.uint8)
    mask, name = decisive_rows(y, origin)
    assert name == "labelled" and mask.tolist() == [True, True, False, False, False, False]
    positives_only = np.array([LABELLED, REAL, SIMULATED, REAL, SIMULATED, HARD], np.uint8)
    mask, name = decisive_rows(y, positives_only)  # one labelled row, one class: all decide
    assert name == "all" and mask.all()


def test_ranking_per_group_counts_and_metrics():
    scores = np.array([3.0, 0.0, 1.0, 2.0, 5.0, -1.0])
    y = np.array([1, 0, 1, 0, 1, 0])
    origin = np.array([LABELLED, LABELLED, SIMULATED, REAL, SIMULATED, HARD], np.uint8)
    out = group_ranking(scores, y, origin)
    assert out["labelled"] == {"n_pos": 1, "n_neg": 1, "auroc": 1.0, "tpr0": 1.0, "tpr10": 1.0}
    assert out["simulated"]["auroc"] == pytest.approx(0.75)  # 1 > 2? no; 5 > both: 3 of 4
    assert ranking(np.zeros(3), np.ones(3))["auroc"] is None


def test_real_rows_pick_the_epoch_when_simulated_rows_favour_another(monkeypatch):
    """Epoch 1 ranks the real labelled rows right and the simulated rows wrong, epoch 2 the
    opposite; simulated rows are the majority, so all rows together favour epoch 2."""
    y = np.array([1, 0, 1, 0] + [1, 0] * 10)
    origin = np.array([LABELLED] * 4 + [SIMULATED, REAL] * 10, np.uint8)
    real_right = np.where(y == 1, 1.0, -1.0)
    epoch1 = np.where(origin == LABELLED, real_right, -real_right)
    epoch2 = -epoch1
    outputs = iter([torch.tensor(epoch1, dtype=torch.float32),
                    torch.tensor(epoch2, dtype=torch.float32)])
    monkeypatch.setattr(trainer_mod, "score_tensor", lambda *a, **k: next(outputs))
    cfg = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "patience": 5,
           "balance": "weight", "monitor": "val_auroc"}
    data = _data(origin, y)
    trainer = Trainer(_Identity(), data, _NoLoader(), cfg, torch.device("cpu"), "fp32",
                      torch.Generator().manual_seed(0))
    records = [trainer.run_epoch(None) for _ in range(2)]
    assert trainer.selected_on == "labelled"
    assert trainer.best_epoch == 1
    assert records[0]["val_auroc"] == 1.0 and records[1]["val_auroc"] == 0.0
    assert records[0]["val_auroc_simulated"] == 0.0 and records[1]["val_auroc_simulated"] == 1.0


def test_without_labelled_rows_every_validation_row_decides(monkeypatch):
    y = np.array([1, 0] * 6)
    origin = np.array([SIMULATED, REAL] * 6, np.uint8)
    logits = iter([torch.tensor(np.where(y == 1, 1.0, -1.0), dtype=torch.float32)] * 1)
    monkeypatch.setattr(trainer_mod, "score_tensor", lambda *a, **k: next(logits))
    cfg = {"epochs": 1, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "patience": 5,
           "balance": "weight", "monitor": "val_auroc"}
    trainer = Trainer(_Identity(), _data(origin, y), _NoLoader(), cfg, torch.device("cpu"),
                      "fp32", torch.Generator().manual_seed(0))
    record = trainer.run_epoch(None)
    assert trainer.selected_on == "all" and record["val_auroc"] == 1.0
    assert "val_auroc_simulated" not in record  # one group: nothing to report beside it


class _NoLoader:
    """A loader with one batch per epoch of zeros (the tests replace the validation scores)."""

    def epoch(self, examples, batch_size, generator):
        yield torch.zeros(8, 3, SIZE, SIZE), torch.cat([torch.ones(4), torch.zeros(4)])


def test_labelled_examples_make_their_share_of_every_epoch():
    from skysift.learn.loader import epoch_examples

    labels = np.array([1, 0] * 50, np.float32)
    labelled = np.zeros(100, bool)
    labelled[:10] = True  # 10 labelled among 90 simulated or unlabelled
    ex = epoch_examples(labels, "weight", torch.Generator().manual_seed(1), labelled, 0.5)
    assert len(ex) == 180 and labelled[ex].sum() == 90  # half of the epoch
    assert set(ex[labelled[ex]].tolist()) == set(range(10))
    same = epoch_examples(labels, "weight", torch.Generator().manual_seed(1), labelled, None)
    assert same.tolist() == list(range(100))
    only = epoch_examples(labels, "weight", torch.Generator(), np.ones(100, bool), 0.5)
    assert only.tolist() == list(range(100))  # one origin: nothing to weigh
