"""The classical model: trained by the train CLI, checkpointed like a CNN, scored like one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skysift.errors import ConfigError, DataError
from skysift.evaluate import calibration
from skysift.io import write_stamps
from skysift.learn import train
from skysift.learn.checkpoints import load_checkpoint, load_model, save_checkpoint
from skysift.learn.classical import ClassicalModel, apply_calibration, fit_calibration, fit_platt
from skysift.metrics import auroc
from skysift.score import prior
from skysift.score.batches import score
from skysift.score.infer import check_compatible
from skysift.stamps.features import compute_features
from skysift.stamps.featurespec import FeatureSpec

SIZE = 32
ATTRS = {"bands": ["g", "r"], "stamp_size_pix": SIZE, "pixscale_arcsec": 0.263,
         "psf_fwhm_arcsec": [1.0, 0.9],
         "normalisation": {"background": "border_median", "scale": "border_mad",
                           "stretch": "arcsinh", "arcsinh_softening": 3.0, "chunk_objects": 64},
         "task": "lens"}
SETTINGS = {"radii_arcsec": [0.5, 1.0, 2.0, 3.5], "tune_trials": 2, "max_iter": [40],
            "learning_rate": [0.1, 0.3], "max_leaf_nodes": [15], "l2_regularization": [0.0],
            "importance_repeats": 2}
CONFIG = {"seed": 11, "train": {"threads": 1},
          "models": [{"name": "cls", "architecture": "classical", "classical": SETTINGS}]}


def ring_stamps(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A red central galaxy in noise; positives (30 %) add a blue ring of radius 6-9 pix."""
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r = np.hypot(x, y)
    label = (rng.random(n) < 0.3).astype(np.uint8)
    images = rng.normal(0, 0.3, (n, 2, SIZE, SIZE))
    images += np.array([1.0, 2.0])[:, None, None] * np.exp(-0.5 * (r / 2.0) ** 2)
    radius = rng.uniform(6, 9, n)
    ring = np.exp(-0.5 * ((r[None] - radius[:, None, None]) / 0.8) ** 2)
    images[label == 1] += np.array([0.8, 0.4])[:, None, None] * ring[label == 1, None]
    return images.astype(np.float32), label


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classical")
    rng = np.random.default_rng(0)
    n_train, n_val, n_test = 200, 80, 120
    n = n_train + n_val + n_test
    images, label = ring_stamps(n, rng)
    split = np.repeat(np.array([0, 1, 2], np.uint8), [n_train, n_val, n_test])
    write_stamps(tmp / "lens.h5", {"images": images, "mask": np.ones(images.shape, np.uint8),
                                   "flags": np.zeros(n, np.uint8),
                                   "index": np.arange(n, dtype=np.int64),
                                   "id": np.arange(n, dtype=np.int64), "label": label,
                                   "split": split}, ATTRS)
    rows = np.flatnonzero(split == 0)
    write_stamps(tmp / "lens.augmented.h5",
                 {"images": np.ascontiguousarray(images[rows][..., ::-1]),
                  "label": label[rows], "index": rows.astype(np.int64),
                  "copy": np.zeros(len(rows), np.uint8)}, {"seeds": [1]})
    np.save(tmp / "images.npy", images)
    np.save(tmp / "label.npy", label)
    np.save(tmp / "split.npy", split)
    return tmp


def argv(tmp, name="cls", config=CONFIG):
    return ["--config-json", json.dumps(config), "--task", "lens", "--model", "cls",
            "--trainset", str(tmp / "lens.h5"), "--augmented", str(tmp / "lens.augmented.h5"),
            "--out", str(tmp / f"{name}.pt"), "--metrics", str(tmp / f"{name}.metrics.json"),
            "--curve", str(tmp / f"{name}.curve.png")]


@pytest.fixture(scope="module")
def trained(data_dir):
    assert train.main(argv(data_dir)) == 0
    return data_dir


def test_writes_the_cnn_outputs_and_metrics_keys(trained):
    metrics = json.loads((trained / "cls.metrics.json").read_text())
    for key in ("task", "model", "architecture", "best_val_auroc", "best_val_loss", "n_train",
                "n_augmented", "n_val", "seconds", "samples_per_s", "provenance", "epochs"):
        assert key in metrics
    assert metrics["architecture"] == "classical" and metrics["best_val_auroc"] > 0.9
    assert metrics["n_train"] == 200 and metrics["n_augmented"] == 200 and metrics["n_val"] == 80
    assert len(metrics["classical"]["trials"]) == 2
    assert metrics["classical"]["importances"][0]["mean"] >= \
        metrics["classical"]["importances"][-1]["mean"]
    assert (trained / "cls.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_has_the_cnn_keys_and_loads_weights_only(trained):
    ckpt = load_checkpoint(trained / "cls.pt")  # torch.load(weights_only=True) inside
    meta = ckpt["meta"]
    assert meta["architecture"] == "classical" and meta["bands"] == ["g", "r"]
    assert meta["in_channels"] == 2 and meta["stamp_size_pix"] == SIZE
    assert meta["normalisation"] == ATTRS["normalisation"] and meta["parameters"] > 0
    assert meta["classical"]["features"]["psf_fwhm_arcsec"] == [1.0, 0.9]
    assert ckpt["model_state"]["booster"].dtype == torch.uint8
    # infer's compatibility check applies unchanged
    check_compatible(meta, {**ATTRS}, "stamps.h5")
    with pytest.raises(DataError, match="stamp_size_pix"):
        check_compatible(meta, {**ATTRS, "stamp_size_pix": 48}, "stamps.h5")


def test_separates_held_out_stamps_and_module_equals_classical_predict(trained):
    images, label = np.load(trained / "images.npy"), np.load(trained / "label.npy")
    test = np.load(trained / "split.npy") == 2
    model, meta = load_model(trained / "cls.pt", "cpu")
    assert isinstance(model, ClassicalModel) and meta["model"] == "cls"
    logits = score(model, images[test], 50, "cpu")
    assert logits.dtype == np.float32 and auroc(logits, label[test]) > 0.9
    spec = FeatureSpec.from_dict(meta["classical"]["features"])
    direct = model.estimator.decision_function(compute_features(images[test], spec))
    calib = meta["classical"]["calibration"]
    np.testing.assert_allclose(logits, (calib["a"] * direct + calib["b"]).astype(np.float32),
                               rtol=1e-6, atol=1e-6)
    assert auroc(logits, label[test]) == auroc(direct, label[test])
    # infer may apply channels_last and autocast: harmless
    x = torch.from_numpy(images[test][:8]).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
        out = model.to(memory_format=torch.channels_last)(x)
    assert out.dtype == torch.float32 and out.device == x.device
    np.testing.assert_allclose(out.numpy(), logits[:8], rtol=1e-6, atol=1e-6)


def test_d4_rotated_stamps_score_alike(trained):
    images = np.load(trained / "images.npy")[:40]
    model, _ = load_model(trained / "cls.pt", "cpu")
    ref = score(model, images, 40, "cpu")
    for k in (1, 2):
        rot = np.ascontiguousarray(np.rot90(images, k, axes=(2, 3)))
        np.testing.assert_allclose(score(model, rot, 40, "cpu"), ref, atol=1e-3)


def test_same_seed_gives_identical_predictions(trained):
    assert train.main(argv(trained, "again")) == 0
    images = np.load(trained / "images.npy")
    a, _ = load_model(trained / "cls.pt", "cpu")
    b, _ = load_model(trained / "again.pt", "cpu")
    np.testing.assert_array_equal(score(a, images, 100, "cpu"), score(b, images, 100, "cpu"))


def test_altered_booster_is_refused(trained, tmp_path):
    ckpt = load_checkpoint(trained / "cls.pt")
    booster = ckpt["model_state"]["booster"].clone()
    booster[-5] ^= 1
    save_checkpoint(tmp_path / "bad.pt", {**ckpt, "model_state": {"booster": booster}})
    with pytest.raises(DataError, match="SHA-256"):
        load_model(tmp_path / "bad.pt", "cpu")


def test_committee_of_classical_models_is_a_config_error(data_dir):
    cfg = json.loads(json.dumps(CONFIG))
    cfg["models"][0]["members"] = 3
    with pytest.raises(ConfigError, match="members"):
        train.train_model(train.cli.cfg.load(json_text=json.dumps(cfg)), "lens", "cls",
                          data_dir / "lens.h5", None, data_dir / "x.pt", data_dir / "x.json",
                          data_dir / "x.png")


def gaussian_scores(n_pos: int, n_neg: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact balanced-prior log-odds and labels: f | y ~ N(+-1, 1), so z = 2 f."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([1, 0], np.uint8), [n_pos, n_neg])
    f = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    return 2.0 * f, y


def test_platt_leaves_calibrated_balanced_prior_logits_alone():
    # a validation split with a 20 % positive fraction: the class weights must undo it
    z, y = gaussian_scores(4000, 16000, 1)
    a, b = fit_platt(z, y)
    assert abs(a - 1.0) < 0.05 and abs(b) < 0.05
    # an unweighted fit would have absorbed the prevalence into b (logit(0.2) = -1.39)
    assert abs(b - prior.logit(0.2)) > 1.0


def test_platt_calibrates_over_confident_scores_and_keeps_the_ranking():
    z_val, y_val = gaussian_scores(1000, 3000, 2)
    z_test, y_test = gaussian_scores(2000, 6000, 3)
    calib = fit_calibration(5.0 * z_val, y_val, "platt")  # scores 5x over-confident
    assert calib["method"] == "platt" and abs(calib["a"] - 0.2) < 0.02
    assert (calib["n_val_pos"], calib["n_val_neg"]) == (1000, 3000)
    raw = 5.0 * z_test
    cal = apply_calibration(raw, calib)
    pi = float(y_test.mean())

    def ece(logits):
        return calibration.ece(prior.probability(logits, pi), y_test, 10, "equal_count")

    assert ece(raw) > 0.05 and ece(cal) < 0.02
    np.testing.assert_array_equal(np.argsort(cal, kind="stable"),
                                  np.argsort(raw, kind="stable"))
    assert auroc(cal, y_test) == auroc(raw, y_test)


def test_separable_validation_split_gives_a_finite_map():
    y = np.repeat(np.array([1, 0], np.uint8), [30, 70])
    f = np.where(y == 1, 3.0, -3.0) + np.linspace(0, 0.1, 100)
    a, b = fit_platt(f, y)
    assert 0 < a < 10 and np.isfinite(b)


def test_identity_without_both_classes_reversed_ranking_or_none(caplog):
    z, y = gaussian_scores(50, 150, 4)
    for scores, labels, method in ((z, np.zeros_like(y), "platt"), (-z, y, "platt"),
                                   (z, y, "none")):
        calib = fit_calibration(scores, labels, method)
        assert (calib["method"], calib["a"], calib["b"]) == ("none", 1.0, 0.0)
    assert "no validation examples of both classes" in caplog.text
    assert "backwards" in caplog.text
    with pytest.raises(ValueError, match="calibrate"):
        fit_calibration(z, y, "isotonic")


def test_checkpoint_round_trip_keeps_the_calibration(trained, tmp_path, caplog):
    ckpt = load_checkpoint(trained / "cls.pt")
    calib = ckpt["meta"]["classical"]["calibration"]
    assert calib["method"] == "platt" and calib["a"] > 0 and calib["a"] != 1.0
    assert calib["n_val_pos"] + calib["n_val_neg"] == 80
    metrics = json.loads((trained / "cls.metrics.json").read_text())
    assert metrics["classical"]["calibration"] == calib
    model, _ = load_model(trained / "cls.pt", "cpu")
    assert (model.a, model.b) == (calib["a"], calib["b"])
    images = np.load(trained / "images.npy")[:20]
    # a checkpoint from before calibration: raw decision function, said once in the log
    meta = {**ckpt["meta"], "classical": {k: v for k, v in ckpt["meta"]["classical"].items()
                                          if k != "calibration"}}
    save_checkpoint(tmp_path / "old.pt", {**ckpt, "meta": meta})
    old, _ = load_model(tmp_path / "old.pt", "cpu")
    assert (old.a, old.b) == (1.0, 0.0)
    assert caplog.text.count("before calibration") == 1
    np.testing.assert_allclose(score(model, images, 20, "cpu"),
                               calib["a"] * score(old, images, 20, "cpu") + calib["b"],
                               rtol=1e-5, atol=1e-5)
