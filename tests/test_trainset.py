"""Tests of skysift.trainset: exact id join, split join, streaming output."""

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from skysift import config as skyconfig
from skysift import io
from skysift.errors import ConfigError, SurveyError
from skysift.split import write_split
from skysift.trainset import build_trainset, clean_labels, join_labels, main

BIG = 2**53  # float64 cannot tell BIG from BIG + 1
SIZE = 8


def _stamps(path, ids, index, seed):
    n = len(ids)
    rng = np.random.default_rng(seed)
    arrays = {"images": rng.normal(size=(n, 2, SIZE, SIZE)).astype(np.float32),
              "mask": rng.integers(0, 2, (n, 2, SIZE, SIZE)).astype(np.uint8),
              "flags": (np.asarray(index) % 4).astype(np.uint8), "index": np.asarray(index),
              "id": ids, "ra": np.zeros(n), "dec": np.zeros(n), "pos_xy": np.zeros((n, 2))}
    attrs = {"bands": ["g", "r"], "tile": path.stem, "stamp_size_pix": SIZE,
             "pixscale_arcsec": 0.26 if seed == 1 else 0.27,
             "normalisation": {"stretch": "arcsinh"},
             **io.provenance({"seed": 0}, step="preprocess")}
    io.write_stamps(path, arrays, attrs, chunk_objects=4)
    return arrays


@pytest.fixture
def survey(tmp_path):
    """Two tiles of 9 and 6 objects with int64 ids just above 2**53; 12 labelled + 2 strays."""
    ids = np.int64(BIG) + np.arange(15, dtype=np.int64)
    tiles = [_stamps(tmp_path / "t0.h5", ids[:9], np.arange(9), 1),
             _stamps(tmp_path / "t1.h5", ids[9:], np.arange(9, 15), 2)]
    labelled = np.array([0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 14])
    label = (labelled % 2).astype(np.int64)  # neighbouring ids get opposite labels
    lab_ids = np.concatenate([ids[labelled], [np.int64(BIG) + 100, np.int64(BIG) + 101]])
    Table({"objid": lab_ids, "is_lens": np.concatenate([label, [1, 0]])}).write(
        tmp_path / "truth.fits")
    split = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 0], dtype=np.uint8)
    write_split(tmp_path / "split.fits", split, {})
    config = skyconfig.load(None, json.dumps({"survey": {"labels": str(tmp_path / "truth.fits")},
                                              "preprocess": {"chunk_objects": 4}}))
    truth = dict(zip(ids[labelled].tolist(), label.tolist(), strict=True))
    return {"tiles": tiles, "config": config, "truth": truth, "split": split,
            "paths": [tmp_path / "t0.h5", tmp_path / "t1.h5"], "dir": tmp_path}


def test_join_labels_exact_above_2_53():
    stamp_ids = np.array([BIG + 1, BIG, BIG + 3, 7], dtype=np.int64)
    found, label = join_labels(stamp_ids, np.array([BIG, BIG + 1, BIG + 2], np.int64),
                               np.array([0, 1, 1], np.uint8))
    assert found.tolist() == [True, True, False, False]
    assert label[:2].tolist() == [1, 0]
    found, label = join_labels(np.array([b"a", b"b", b"c"]), np.array(["c", "a"]),
                               np.array([1, 0], np.uint8))
    assert found.tolist() == [True, False, True] and label.tolist() == [0, 0, 1]


def test_clean_labels_accepts_0_1_and_missing_rejects_others():
    present, label = clean_labels(MaskedColumn([1, 0, 1], mask=[False, True, False]), "x")
    assert present.tolist() == [True, False, True] and label.tolist() == [1, 0, 1]
    present, _ = clean_labels(np.array([1.0, np.nan, 0.0]), "x")
    assert present.tolist() == [True, False, True]
    with pytest.raises(SurveyError, match="0 or 1"):
        clean_labels(np.array([0, 1, 2]), "truth.fits: column 'is_lens'")


def test_trainset_joins_labels_and_split(survey, tmp_path):
    out = tmp_path / "train" / "lens.h5"
    summary = build_trainset(survey["paths"], tmp_path / "split.fits", out, survey["config"],
                             "lens")
    assert summary["n_labelled"] == 12 and summary["n_unlabelled"] == 3
    assert summary["n_labels_without_stamp"] == 2
    got, attrs = io.read_arrays(out, ("images", "mask", "flags", "index", "id", "label",
                                      "split"))
    assert got["id"].dtype == np.int64
    assert [survey["truth"][i] for i in got["id"].tolist()] == got["label"].tolist()
    assert np.array_equal(got["split"], survey["split"][got["index"]])
    source = {int(i): (t["images"][r], t["mask"][r], t["flags"][r])
              for t in survey["tiles"] for r, i in enumerate(t["id"])}
    for k, i in enumerate(got["id"].tolist()):
        assert np.array_equal(got["images"][k], source[i][0])
        assert np.array_equal(got["mask"][k], source[i][1]) and got["flags"][k] == source[i][2]
    assert attrs["task"] == "lens" and attrs["label_column"] == "is_lens"
    assert attrs["counts"]["train"] == {"neg": 4, "pos": 4}
    assert attrs["n_val_pos"] + attrs["n_val_neg"] == 2 and attrs["tiles"] == ["t0", "t1"]
    assert attrs["bands"] == ["g", "r"] and attrs["pixscale_arcsec"] == pytest.approx(0.265)


def test_string_ids(tmp_path):
    ids = io.id_array([f"obj-{i}" for i in range(6)])
    _stamps(tmp_path / "t0.h5", ids, np.arange(6), 1)
    Table({"name": [f"obj-{i}" for i in (5, 4, 1, 0)], "merger": [1, 0, 1, 0]}).write(
        tmp_path / "truth.csv")
    write_split(tmp_path / "split.fits", np.zeros(6, np.uint8), {})
    cfg = {"survey": {"labels": str(tmp_path / "truth.csv"), "labels_id_column": "name"},
           "tasks": [{"name": "merger", "label": "merger"}]}
    argv = ["--config-json", json.dumps(cfg), "--task", "merger", "--stamps",
            str(tmp_path / "t0.h5"), "--split", str(tmp_path / "split.fits"),
            "--out", str(tmp_path / "merger.h5")]
    assert main(argv) == 0
    got, _ = io.read_arrays(tmp_path / "merger.h5", ("id", "label", "index"))
    assert got["id"].tolist() == [b"obj-0", b"obj-1", b"obj-4", b"obj-5"]
    assert got["label"].tolist() == [0, 1, 0, 1] and got["index"].tolist() == [0, 1, 4, 5]


def test_rejects_bad_labels_and_config(survey, tmp_path):
    args = (survey["paths"], tmp_path / "split.fits", tmp_path / "out.h5")
    Table({"objid": [BIG, BIG + 1], "is_lens": [0, 2]}).write(tmp_path / "bad.fits")
    config = dict(survey["config"], survey=dict(survey["config"]["survey"],
                                                labels=str(tmp_path / "bad.fits")))
    with pytest.raises(SurveyError, match="only 0 or 1"):
        build_trainset(*args, config, "lens")
    with pytest.raises(SurveyError, match="survey.labels"):
        build_trainset(*args, dict(config, survey=dict(config["survey"], labels=None)), "lens")
    with pytest.raises(ConfigError, match="merger"):
        build_trainset(*args, survey["config"], "nosuch")
    with pytest.raises(SurveyError, match="is_merger"):  # column missing from the table
        build_trainset(*args, survey["config"], "merger")
    assert not (tmp_path / "out.h5").exists()


def test_train_split_needs_both_classes(survey, tmp_path):
    Table({"objid": [BIG, BIG + 1], "is_lens": [1, 1]}).write(tmp_path / "pos.fits")
    config = dict(survey["config"], survey=dict(survey["config"]["survey"],
                                                labels=str(tmp_path / "pos.fits")))
    with pytest.raises(SurveyError, match="0 negatives"):
        build_trainset(survey["paths"], tmp_path / "split.fits", tmp_path / "o.h5", config,
                       "lens")
