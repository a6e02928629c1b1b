"""Training: learns an easy synthetic task, is bit-reproducible, checkpoints and resumes."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch

from skysift import train
from skysift.config import load
from skysift.errors import DataError
from skysift.io import write_stamps
from skysift.models import build_model

SIZE = 16
ATTRS = {"bands": ["g", "r", "i"], "stamp_size_pix": SIZE, "pixscale_arcsec": 0.263,
         "normalisation": {"background": "border_median", "scale": "border_mad",
                           "stretch": "arcsinh", "arcsinh_softening": 3.0,
                           "chunk_objects": 256},
         "task": "lens"}
# the real on-the-fly augmentation once skysift.augment exists (it is written in parallel)
ON_THE_FLY = importlib.util.find_spec("skysift.augment") is not None
CONFIG = {"seed": 7, "augment": {"on_the_fly": ON_THE_FLY},
          "train": {"epochs": 3, "batch_size": 32, "lr": 0.003, "patience": 10}}


def ring_stamps(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stamps (n, 3, 16, 16): a central blob in noise; positives (30 %) add a bright ring."""
    y, x = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    r = np.hypot(x, y)
    label = (rng.random(n) < 0.3).astype(np.uint8)
    images = rng.normal(0, 0.3, (n, 3, SIZE, SIZE)) + 2 * np.exp(-0.5 * (r / 1.5) ** 2)
    images[label == 1] += 1.5 * np.exp(-0.5 * ((r - 5) / 0.8) ** 2)
    return images.astype(np.float32), label


def write_trainset(path, n_train=120, n_val=60, n_test=10, seed=0, **extra_attrs):
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    images, label = ring_stamps(n, rng)
    split = np.repeat(np.array([0, 1, 2], np.uint8), [n_train, n_val, n_test])
    write_stamps(path, {"images": images, "mask": np.ones(images.shape, np.uint8),
                        "flags": np.zeros(n, np.uint8), "index": np.arange(n, dtype=np.int64),
                        "id": np.arange(n, dtype=np.int64) + 2**60, "label": label,
                        "split": split}, {**ATTRS, **extra_attrs})
    return images, label, split


def write_augmented(path, trainset_images, label, split):
    """One flipped copy of every train-split stamp."""
    train_rows = np.flatnonzero(split == 0)
    write_stamps(path, {"images": trainset_images[train_rows][..., ::-1].copy(),
                        "label": label[train_rows], "index": train_rows.astype(np.int64),
                        "copy": np.zeros(len(train_rows), np.uint8)},
                 {"seeds": [1], "augment": {"copies": 1}})


def argv(tmp, name="lens", config=CONFIG, *extra):
    return ["--config-json", json.dumps(config), "--task", "lens",
            "--trainset", str(tmp / "lens.h5"), "--augmented", str(tmp / "lens.augmented.h5"),
            "--out", str(tmp / f"{name}.pt"), "--metrics", str(tmp / f"{name}.metrics.json"),
            "--curve", str(tmp / f"{name}.curve.png"), *extra]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    write_augmented(tmp / "lens.augmented.h5", *write_trainset(tmp / "lens.h5"))
    return tmp


@pytest.fixture(scope="module")
def trained(data_dir):
    assert train.main(argv(data_dir)) == 0
    return data_dir


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_learns_the_easy_ring_task(trained):
    metrics = json.loads((trained / "lens.metrics.json").read_text())
    assert metrics["best_val_auroc"] > 0.9
    assert metrics["n_train"] == 120 and metrics["n_augmented"] == 120 and metrics["n_val"] == 60
    assert len(metrics["epochs"]) == 3
    assert metrics["device"] == "cpu" and metrics["precision"] == "fp32"
    assert metrics["pos_weight"] == pytest.approx(metrics["pos_weight"])  # finite
    assert metrics["samples_per_s"] > 0
    assert (trained / "lens.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (trained / "lens.pt.last").exists()


def test_checkpoint_holds_every_state_and_meta(trained):
    ckpt = load_ckpt(trained / "lens.pt")
    for key in ("model_state", "optimizer_state", "scheduler_state", "scaler_state",
                "rng_state", "epoch", "config", "meta"):
        assert key in ckpt
    assert set(ckpt["rng_state"]) >= {"torch", "generator"}
    assert ckpt["optimizer_state"]["state"]  # AdamW moments were saved
    assert ckpt["epoch"] == 3 and 1 <= ckpt["best_epoch"] <= 3
    meta = ckpt["meta"]
    assert meta["architecture"] == "baseline3" and meta["task"] == "lens"
    assert meta["bands"] == ["g", "r", "i"] and meta["in_channels"] == 3
    assert meta["stamp_size_pix"] == SIZE and meta["pixscale_arcsec"] == 0.263
    assert meta["normalisation"] == ATTRS["normalisation"]
    assert meta["provenance"]["seed"] == 7 and "git_commit" in meta["provenance"]
    assert ckpt["config"]["train"]["lr"] == 0.003
    model = build_model("baseline3", 3, SIZE)
    model.load_state_dict(ckpt["model_state"])


def test_same_seed_gives_identical_weights(trained):
    assert train.main(argv(trained, "again")) == 0
    a, b = load_ckpt(trained / "lens.pt"), load_ckpt(trained / "again.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    other = {**CONFIG, "seed": 8, "train": {**CONFIG["train"], "epochs": 1}}
    assert train.main(argv(trained, "other", other)) == 0
    c = load_ckpt(trained / "other.pt")
    assert not torch.equal(a["model_state"]["head.4.weight"], c["model_state"]["head.4.weight"])


class Killed(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_run(trained, monkeypatch):
    save = train.save_checkpoint

    def killed_after_first_epoch(path, payload):
        save(path, payload)
        if str(path).endswith(".last") and payload["epoch"] == 1:
            raise Killed

    monkeypatch.setattr(train, "save_checkpoint", killed_after_first_epoch)
    with pytest.raises(Killed):
        train.main(argv(trained, "resumed"))
    assert (trained / "resumed.pt.last").exists() and not (trained / "resumed.pt").exists()
    monkeypatch.setattr(train, "save_checkpoint", save)
    assert train.main(argv(trained, "resumed", CONFIG, "--resume")) == 0
    a, b = load_ckpt(trained / "lens.pt"), load_ckpt(trained / "resumed.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    metrics = json.loads((trained / "resumed.metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]


def test_early_stopping_keeps_the_best_weights(data_dir):
    data = train.load_data(data_dir / "lens.h5")
    torch.manual_seed(0)
    model = build_model("baseline3", 3, SIZE)
    cfg = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "patience": 2}
    trainer = train.Trainer(model, data, cfg, torch.device("cpu"), "fp32",
                            torch.Generator().manual_seed(0))
    val_losses = iter([1.0, 0.5, 0.7, 0.6, 0.4])
    trainer.validate = lambda: (next(val_losses), 0.5)
    snapshots = []
    while not trainer.stopped:
        trainer.run_epoch(None)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    assert trainer.epoch == 4 and trainer.best_epoch == 2
    assert all(torch.equal(trainer.best_state[k], snapshots[1][k]) for k in snapshots[1])


def test_without_validation_trains_every_epoch(tmp_path, capsys):
    write_trainset(tmp_path / "lens.h5", n_train=40, n_val=0, n_test=0)
    cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": 2, "patience": 1}}
    args = [a for a in argv(tmp_path, "lens", cfg) if "augmented" not in a]
    assert train.main(args) == 0
    assert "no validation examples" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "lens.metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and metrics["best_epoch"] == 2
    assert metrics["best_val_auroc"] is None and not metrics["early_stopped"]


def test_on_the_fly_augmentation_uses_the_seeded_generator(tmp_path, monkeypatch):
    write_trainset(tmp_path / "lens.h5", n_train=40, n_val=10, n_test=0)
    calls = []

    def augment_batch(x, cfg, generator):
        calls.append((x.shape, cfg["d4"], isinstance(generator, torch.Generator)))
        return torch.flip(x, dims=(-1,)) if torch.rand((), generator=generator) < 0.5 else x

    monkeypatch.setitem(sys.modules, "skysift.augment",
                        types.SimpleNamespace(augment_batch=augment_batch))
    cfg = {**CONFIG, "augment": {"on_the_fly": True},
           "train": {**CONFIG["train"], "epochs": 1}}
    args = [a for a in argv(tmp_path, "lens", cfg) if "augmented" not in a]
    assert train.main(args) == 0
    assert calls == [((32, 3, SIZE, SIZE), True, True), ((8, 3, SIZE, SIZE), True, True)]


def test_single_class_and_fp16_on_cpu_are_user_errors(tmp_path, capsys):
    write_trainset(tmp_path / "lens.h5", n_train=20, n_val=5, n_test=0)
    fp16 = {**CONFIG, "train": {**CONFIG["train"], "precision": "fp16", "device": "cpu"}}
    args = [a for a in argv(tmp_path, "lens", fp16) if "augmented" not in a]
    assert train.main(args) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    with pytest.raises(DataError, match="needs both"):
        data = train.load_data(tmp_path / "lens.h5")
        data.y_train[:] = 0
        train.Trainer(build_model("baseline3", 3, SIZE), data, load(json_text=json.dumps(
            CONFIG))["train"], torch.device("cpu"), "fp32", torch.Generator())


def test_augmented_copies_of_other_objects_are_refused(tmp_path):
    images, label, split = write_trainset(tmp_path / "lens.h5", n_train=20, n_val=5, n_test=0)
    write_augmented(tmp_path / "lens.augmented.h5", images, label, np.zeros_like(split))
    with pytest.raises(DataError, match="outside the train split"):
        train.load_data(tmp_path / "lens.h5", tmp_path / "lens.augmented.h5")
