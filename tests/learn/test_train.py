"""Training: learns an easy synthetic task, is bit-reproducible, checkpoints and resumes."""

from __future__ import annotations

import copy
import json
import os
import sys
import types

import numpy as np
import pytest
import torch

from skysift.config import load
from skysift.errors import DataError
from skysift.io import write_stamps
from skysift.learn import train
from skysift.learn.loader import RamLoader, StreamLoader, epoch_examples, make_loader, open_data
from skysift.learn.models import build_model
from skysift.learn.trainer import Trainer

SIZE = 16
ATTRS = {"bands": ["g", "r", "i"], "stamp_size_pix": SIZE, "pixscale_arcsec": 0.263,
         "normalisation": {"background": "border_median", "scale": "border_mad",
                           "stretch": "arcsinh", "arcsinh_softening": 3.0,
                           "chunk_objects": 256},
         "task": "lens"}
CONFIG = {"seed": 7, "augment": {"on_the_fly": True},
          "models": [{"name": "cnn", "architecture": "baseline3"}],
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


def record_epochs(monkeypatch) -> list[dict]:
    """Patch Trainer.run_epoch to record, before each epoch it runs, the trainer's epoch
    counter and a copy of its optimiser and scheduler state: what a run really executes."""
    runs = []
    run_epoch = Trainer.run_epoch

    def recorded(self, augment):
        runs.append({"epoch": self.epoch, "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                     "scheduler": dict(self.scheduler.state_dict())})
        return run_epoch(self, augment)

    monkeypatch.setattr(Trainer, "run_epoch", recorded)
    return runs


def same_optimizer_state(a: dict, b: dict) -> bool:
    """AdamW states equal: every parameter's step count and moments, and the param groups."""
    if a["param_groups"] != b["param_groups"] or a["state"].keys() != b["state"].keys():
        return False
    return all(torch.equal(torch.as_tensor(a["state"][i][k]), torch.as_tensor(v))
               for i in a["state"] for k, v in b["state"][i].items())


def kill_and_resume(tmp, name, config, killed_when, monkeypatch, extra=()):
    """Run train until ``killed_when(payload)`` of a ``.last`` save, then resume it; returns
    (the ``.last`` it resumed from, the epochs the resumed run executed)."""
    save = train.save_checkpoint

    def killed(path, payload):
        save(path, payload)
        if str(path).endswith(".last") and killed_when(payload):
            raise Killed

    monkeypatch.setattr(train, "save_checkpoint", killed)
    with pytest.raises(Killed):
        train.main(argv(tmp, name, config, *extra))
    assert (tmp / f"{name}.pt.last").exists() and not (tmp / f"{name}.pt").exists()
    last = load_ckpt(tmp / f"{name}.pt.last")
    monkeypatch.setattr(train, "save_checkpoint", save)
    runs = record_epochs(monkeypatch)
    assert train.main(argv(tmp, name, config, *extra, "--resume")) == 0
    assert not (tmp / f"{name}.pt.last").exists()
    return last, runs


def test_resume_reproduces_the_uninterrupted_run(trained, monkeypatch):
    last, runs = kill_and_resume(trained, "resumed", CONFIG, lambda p: p["epoch"] == 1,
                                 monkeypatch)
    # only the two remaining epochs ran, the first from the saved optimiser and schedule
    assert [r["epoch"] for r in runs] == [1, 2]
    assert last["optimizer_state"]["state"]  # AdamW moments after one epoch
    assert same_optimizer_state(runs[0]["optimizer"], last["optimizer_state"])
    assert runs[0]["scheduler"]["last_epoch"] == last["scheduler_state"]["last_epoch"] > 0
    a, b = load_ckpt(trained / "lens.pt"), load_ckpt(trained / "resumed.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    metrics = json.loads((trained / "resumed.metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]


def test_resume_ignores_a_last_checkpoint_of_another_config_or_training_set(
        trained, monkeypatch, capsys):
    """The rule always passes --resume: a stale .last (config or training files changed since
    it was written) must not be continued; training starts over. One epoch per run: a
    resume would run none, a fresh start runs epoch 0."""
    one = {**CONFIG, "train": {**CONFIG["train"], "epochs": 1}}
    other = {**one, "train": {**one["train"], "lr": 0.001}}
    save = train.save_checkpoint

    def killed_at_first_save(config):
        def killed(path, payload):
            save(path, payload)
            if str(path).endswith(".last"):
                raise Killed
        monkeypatch.setattr(train, "save_checkpoint", killed)
        with pytest.raises(Killed):
            train.main(argv(trained, "stale", config))
        monkeypatch.setattr(train, "save_checkpoint", save)
        assert (trained / "stale.pt.last").exists()

    runs = record_epochs(monkeypatch)
    killed_at_first_save(other)
    runs.clear()
    capsys.readouterr()
    assert train.main(argv(trained, "stale", one, "--resume")) == 0
    assert "written with another config; training from the start" in capsys.readouterr().err
    assert [r["epoch"] for r in runs] == [0]

    killed_at_first_save(one)  # same config, but the training set is re-made since
    st = (trained / "lens.h5").stat()
    os.utime(trained / "lens.h5", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    runs.clear()
    capsys.readouterr()
    assert train.main(argv(trained, "stale", one, "--resume")) == 0
    assert "from other training files" in capsys.readouterr().err
    assert [r["epoch"] for r in runs] == [0]
    assert not (trained / "stale.pt.last").exists()


def test_early_stopping_keeps_the_best_weights(data_dir):
    data = open_data(data_dir / "lens.h5")
    torch.manual_seed(0)
    model = build_model("baseline3", 3, SIZE)
    cfg = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "patience": 2,
           "balance": "weight", "monitor": "val_loss"}
    trainer = Trainer(model, data, RamLoader(data), cfg, torch.device("cpu"), "fp32",
                      torch.Generator().manual_seed(0))
    val_losses = iter([1.0, 0.5, 0.7, 0.6, 0.4])
    trainer.validate = lambda: (next(val_losses), 0.5)
    snapshots = []
    while not trainer.stopped:
        trainer.run_epoch(None)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
    assert trainer.epoch == 4 and trainer.best_epoch == 2
    assert all(torch.equal(trainer.best_state[k], snapshots[1][k]) for k in snapshots[1])


def test_monitor_val_auroc_keeps_the_best_ranking_epoch(data_dir):
    """train.monitor: val_auroc follows the AUROC even while the validation loss rises."""
    data = open_data(data_dir / "lens.h5")
    torch.manual_seed(0)
    cfg = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "weight_decay": 0.0, "patience": 2,
           "balance": "weight", "monitor": "val_auroc"}
    trainer = Trainer(build_model("baseline3", 3, SIZE), data, RamLoader(data), cfg,
                      torch.device("cpu"), "fp32", torch.Generator().manual_seed(0))
    vals = iter([(0.5, 0.80), (0.6, 0.85), (0.7, 0.90), (0.4, 0.88), (0.3, float("nan")),
                 (0.2, 0.89)])
    trainer.validate = lambda: next(vals)
    while not trainer.stopped:
        trainer.run_epoch(None)
    # best AUROC 0.90 at epoch 3 (the loss was lowest later); epochs 4 and 5 do not improve
    assert trainer.best_epoch == 3 and trainer.epoch == 5
    assert trainer.best_val_loss == 0.7
    state = trainer.state_dict()["trainer_state"]
    assert state["best_score"] == -0.90


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

    def augment_batch(x, cfg, generator, normalisation=None):
        calls.append((x.shape, cfg["d4"], isinstance(generator, torch.Generator)))
        return torch.flip(x, dims=(-1,)) if torch.rand((), generator=generator) < 0.5 else x

    monkeypatch.setitem(sys.modules, "skysift.learn.transforms",
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
        data = open_data(tmp_path / "lens.h5")
        data.labels[:] = 0
        Trainer(build_model("baseline3", 3, SIZE), data, RamLoader(data), load(
            json_text=json.dumps(CONFIG))["train"], torch.device("cpu"), "fp32",
            torch.Generator())


def test_augmented_copies_of_other_objects_are_refused(tmp_path):
    images, label, split = write_trainset(tmp_path / "lens.h5", n_train=20, n_val=5, n_test=0)
    write_augmented(tmp_path / "lens.augmented.h5", images, label, np.zeros_like(split))
    with pytest.raises(DataError, match="outside the train split"):
        open_data(tmp_path / "lens.h5", tmp_path / "lens.augmented.h5")


def committee_config(**train):
    return {**CONFIG, "models": [{"name": "trio", "architecture": "baseline3", "members": 2,
                                  "epochs": 2}],
            "train": {**CONFIG["train"], **train}}


def test_committee_averages_its_members_and_resumes_mid_committee(trained, monkeypatch):
    cfg = committee_config()
    assert train.main(argv(trained, "trio", cfg, "--model", "trio")) == 0
    ckpt = load_ckpt(trained / "trio.pt")
    assert ckpt["meta"]["members"] == 2 and ckpt["meta"]["model"] == "trio"
    model = build_model("baseline3", 3, SIZE, members=2)
    model.load_state_dict(ckpt["model_state"])
    model.eval()
    x = torch.from_numpy(ring_stamps(6, np.random.default_rng(5))[0])
    with torch.no_grad():
        members = torch.stack([m(x) for m in model.members])
        np.testing.assert_allclose(model(x), members.mean(0), rtol=1e-6)
    assert not torch.allclose(members[0], members[1])  # seeded differently
    metrics = json.loads((trained / "trio.metrics.json").read_text())
    assert [r["member"] for r in metrics["member_records"]] == [0, 1]
    assert metrics["best_val_auroc"] > 0.9

    last, runs = kill_and_resume(trained, "trio2", cfg,
                                 lambda p: p["member"] == 1 and p["epoch"] == 1, monkeypatch,
                                 ("--model", "trio"))
    # member 0 is not trained again; member 1 runs its last epoch from its saved optimiser
    assert [r["epoch"] for r in runs] == [1]
    assert len(last["done_states"]) == 1
    assert same_optimizer_state(runs[0]["optimizer"], last["optimizer_state"])
    again = load_ckpt(trained / "trio2.pt")
    assert all(torch.equal(ckpt["model_state"][k], again["model_state"][k])
               for k in ckpt["model_state"])


def test_same_seed_gives_identical_metrics(trained):
    if not (trained / "again.metrics.json").exists():
        assert train.main(argv(trained, "again")) == 0
    a, b = (json.loads((trained / f"{n}.metrics.json").read_text()) for n in ("lens", "again"))
    timing = ("seconds", "train_seconds", "samples_per_s")
    assert [{k: v for k, v in e.items() if k not in timing} for e in a["epochs"]] == \
        [{k: v for k, v in e.items() if k not in timing} for e in b["epochs"]]
    assert a["best_val_auroc"] == b["best_val_auroc"] and a["best_val_loss"] == b["best_val_loss"]


def test_streaming_batches_do_not_depend_on_the_worker_count(data_dir):
    data = open_data(data_dir / "lens.h5", data_dir / "lens.augmented.h5")
    for s in data.sources:
        s.chunk = 16  # several chunks per file, so groups mix chunks and files
    examples = epoch_examples(data.labels, "weight", torch.Generator().manual_seed(3))
    runs = []
    for workers in (0, 2):
        loader = StreamLoader(data, workers)
        runs.append(list(loader.epoch(examples, 32, torch.Generator().manual_seed(3))))
    (a, b), ram = runs, RamLoader(data)
    assert [len(y) for _, y in a] == [32] * 7 + [16]
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # every example exactly once, with its own label
    seen = torch.cat([x for x, _ in a]).flatten(1)
    assert torch.equal(seen.sum(0), ram.x.flatten(1).sum(0)) or torch.allclose(
        seen.sum(0), ram.x.flatten(1).sum(0), rtol=1e-5, atol=1e-4)
    assert float(torch.cat([y for _, y in a]).sum()) == float(data.labels.sum())


def test_balanced_sampling_equalises_the_classes():
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 1], np.float32)
    ex = epoch_examples(labels, "sample", torch.Generator().manual_seed(0))
    assert (labels[ex] == 1).sum() == (labels[ex] == 0).sum() == 6
    assert set(np.flatnonzero(labels == 0)) <= set(ex)  # every negative once
    assert epoch_examples(labels, "weight", torch.Generator()).tolist() == list(range(8))


def test_train_with_stream_and_sample_balance(data_dir):
    cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": 1, "data": "stream",
                               "workers": 0, "balance": "sample"}}
    assert train.main(argv(data_dir, "streamed", cfg)) == 0
    metrics = json.loads((data_dir / "streamed.metrics.json").read_text())
    assert metrics["balance"] == "sample" and metrics["pos_weight"] == 1.0
    labels = open_data(data_dir / "lens.h5", data_dir / "lens.augmented.h5").labels
    assert metrics["epochs"][0]["examples"] == 2 * int((labels == 0).sum())


def test_checkpoint_entry_imports_instead_of_training(trained, tmp_path, capsys):
    cfg = {**CONFIG, "models": [{"name": "old", "architecture": "baseline3", "tasks": ["lens"],
                                 "checkpoint": str(trained / "lens.pt")},
                                {"name": "cnn", "architecture": "baseline3"}]}
    args = ["--config-json", json.dumps(cfg), "--task", "lens", "--model", "old",
            "--out", str(tmp_path / "old.pt")]
    assert train.main(args) == 0
    src, got = load_ckpt(trained / "lens.pt"), load_ckpt(tmp_path / "old.pt")
    assert got["meta"]["model"] == "old" and got["meta"]["imported_from"] == str(
        trained / "lens.pt")
    assert all(torch.equal(src["model_state"][k], got["model_state"][k])
               for k in src["model_state"])
    metrics = json.loads((tmp_path / "old.metrics.json").read_text())
    assert metrics["imported_from"] == str(trained / "lens.pt") and len(metrics["epochs"]) == 3
    cfg["models"][0]["architecture"] = "deeplens"
    args[1] = json.dumps(cfg)
    assert train.main(args) == 2
    assert "holds a 'baseline3' model" in capsys.readouterr().err


def test_ram_loader_batches_do_not_depend_on_where_the_images_live(data_dir, monkeypatch):
    """The plan is made on the CPU: a RamLoader given a device yields the same batches, and
    keeps the images on the host unless that device is a GPU with room for them."""
    from skysift.learn import loader as loader_mod

    data = open_data(data_dir / "lens.h5")
    examples = epoch_examples(data.labels, "weight", torch.Generator().manual_seed(5))
    plain = list(RamLoader(data).epoch(examples, 16, torch.Generator().manual_seed(5)))
    asked = []
    monkeypatch.setattr(loader_mod, "_fits_on", lambda dev, x: asked.append(dev) or True)
    on_cpu = RamLoader(data, torch.device("cpu"))
    assert on_cpu.device.type == "cpu" and asked == []  # only a CUDA device is considered
    again = list(on_cpu.epoch(examples, 16, torch.Generator().manual_seed(5)))
    assert len(plain) == len(again) > 1
    for (xa, ya), (xb, yb) in zip(plain, again, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert make_loader(data, "ram", 1.0, 0, torch.device("cpu")).device.type == "cpu"
