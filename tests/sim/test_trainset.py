"""Tests of skysift.sim.trainset: exact id join, split join, streaming output; simulated sets."""

import json

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from skysift import config as skyconfig
from skysift import io
from skysift.errors import ConfigError, SurveyError
from skysift.sim.frames import Frames, scan
from skysift.sim.trainfile import HARD, LABELLED, REAL, SIMULATED
from skysift.sim.trainset import build_trainset, main
from skysift.sim.trainsim import render_sims
from skysift.stamps.normalise import normalise
from skysift.survey.labels import clean_labels, join_labels
from skysift.survey.split import write_split

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


def test_grades_add_labelled_rows_with_their_source(survey, tmp_path):
    """review.grades: the unlabelled stamps graded A/N join the labels (those of the test
    split by id hash excepted), the table's label wins over a grade, and label_source says
    where each row's label comes from."""
    from skysift.survey.hashsplit import assign_split

    ids = np.int64(BIG) + np.arange(15, dtype=np.int64)
    test = assign_split(ids, {"train": 0.7, "val": 0.15, "test": 0.15}, "skysift-v1") == 2
    graded = {4: "A", 8: "N", 13: "A", 0: "A", 6: "A"}  # 4, 8, 13 unlabelled; 0, 6 labelled 0
    sheet = tmp_path / "round1.csv"
    sheet.write_text("rank,index,id,ra,dec,score,grade\n" + "".join(
        f"{r},{i},{ids[i]},0,0,1,{g}\n" for r, (i, g) in enumerate(graded.items())))
    config = dict(survey["config"], review={**survey["config"]["review"],
                                            "grades": [{"file": str(sheet), "task": "lens",
                                                        "round": 1}]})
    out = tmp_path / "graded.h5"
    summary = build_trainset(survey["paths"], tmp_path / "split.fits", out, config, "lens")
    added = [i for i in (4, 8, 13) if not test[i]]
    assert summary["n_labelled"] == 12 + len(added)
    got, attrs = io.read_arrays(out, ("id", "label", "label_source"))
    source = dict(zip((got["id"] - BIG).tolist(), got["label_source"].tolist(), strict=True))
    label = dict(zip((got["id"] - BIG).tolist(), got["label"].tolist(), strict=True))
    for i in added:
        assert source[i] == f"grades:{sheet}".encode() and label[i] == int(graded[i] == "A")
    assert source[0] == b"labels" and label[0] == 0      # the labels table wins
    assert attrs["grades"]["n_test"] == int(sum(test[i] for i in graded)) >= 1  # 6: test


def test_string_ids(tmp_path):
    ids = io.id_array([f"obj-{i}" for i in range(6)])
    _stamps(tmp_path / "t0.h5", ids, np.arange(6), 1)
    Table({"name": [f"obj-{i}" for i in (5, 4, 1, 0)], "merger": [1, 0, 1, 0]}).write(
        tmp_path / "truth.csv")
    write_split(tmp_path / "split.fits", np.zeros(6, np.uint8), {})
    cfg = {"survey": {"labels": str(tmp_path / "truth.csv"), "labels_id_column": "name"},
           "tasks": [{"name": "merger", "label": "merger"}], "training_set": {"use": "labels"}}
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


# --- simulated training sets (skysift.sim.trainsim) -------------------------------------------

S = 32
N_SHARD = 16


def _shard(tmp_path, k, ids, index, rng):
    """Raw cutouts and stamps of one shard: Gaussian galaxies, a star, a flagged object."""
    n = len(ids)
    yy, xx = np.mgrid[:S, :S]
    raw = rng.normal(0, 1.0, (n, 2, S, S))
    for j in range(n):
        sig = 0.8 if j == 0 else 2.5  # object 0 is point-like
        g = np.exp(-0.5 * ((xx - S // 2) ** 2 + (yy - S // 2) ** 2) / sig**2)
        raw[j] += 2000 * g / g.sum() * np.array([0.5, 1.0])[:, None, None]
    raw = raw.astype(np.float32)
    flags = np.zeros(n, np.uint8)
    flags[1] = 1
    tile = f"t{k}"
    info = {tile: {"pixscale_arcsec": 0.263, "psf_fwhm_arcsec": [1.0, 0.9],
                   "zeropoint": [30.0, 30.0], "paths": [], "shape": [400, 400],
                   "n_objects": n}}
    cols = {"flags": flags, "index": np.asarray(index), "id": ids, "ra": np.zeros(n),
            "dec": np.zeros(n), "pos_xy": np.full((n, 2), 100.3), "tile": np.full(n, tile.encode())}
    attrs = {"bands": ["g", "r"], "stamp_size_pix": S, "pixscale_arcsec": 0.263,
             "tile_info": info, "shard": f"s{k}", **io.provenance({"seed": 0}, step="cutouts")}
    io.write_stamps(tmp_path / f"cut{k}.h5", {"images": raw, **cols}, attrs, chunk_objects=8)
    norm = skyconfig.load()["preprocess"]
    images, mask = normalise(raw, norm)
    io.write_stamps(tmp_path / f"st{k}.h5", {"images": images, "mask": mask, **cols},
                    dict(attrs, normalisation=norm), chunk_objects=8)
    return raw, images


@pytest.fixture(scope="module")
def simsurvey(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("simsurvey")
    rng = np.random.default_rng(0)
    ids = np.int64(BIG) + np.arange(2 * N_SHARD, dtype=np.int64)
    shards = [_shard(tmp_path, k, ids[k * N_SHARD:(k + 1) * N_SHARD],
                     np.arange(k * N_SHARD, (k + 1) * N_SHARD), rng) for k in range(2)]
    split = (np.arange(2 * N_SHARD) % 4 == 3).astype(np.uint8) * 2  # every 4th object: test
    split[2::8] = 1
    write_split(tmp_path / "split.fits", split, {})
    is_lens, is_merger = np.zeros((2, 2 * N_SHARD), np.int64)
    is_lens[[4, 20]] = 1  # known lenses: never hosts nor negatives
    is_merger[[6, 22]] = 1
    Table({"objid": ids, "is_lens": is_lens, "is_merger": is_merger}).write(
        tmp_path / "truth.fits")
    cfg = {"survey": {"labels": str(tmp_path / "truth.fits"), "bands": ["g", "r"]},
           "preprocess": {"chunk_objects": 8},
           "training_set": {"use": "simulated", "max_negatives": 12, "gain": 4.0, "supersample": 2,
                            "gallery_examples": 2, "hosts": {"mag": [15.0, 25.0]},
                            "lens": {"max_draws": 1, "arc_snr_min": 0.0}}}
    return {"dir": tmp_path, "cfg": cfg, "split": split, "ids": ids, "known": [4, 20],
            "stamps": np.concatenate([s[1] for s in shards]),
            "raw": np.concatenate([s[0] for s in shards])}


def _argv(d, cfg, task="lens", out="lens.h5", cutouts=True, gallery=False):
    argv = ["--config-json", json.dumps(cfg), "--task", task,
            "--stamps", str(d / "st0.h5"), str(d / "st1.h5"), "--split", str(d / "split.fits"),
            "--out", str(d / out)] + (["--gallery", str(d / (out + ".png"))] if gallery else [])
    return argv + (["--cutouts", str(d / "cut0.h5"), str(d / "cut1.h5")] if cutouts else [])


@pytest.fixture(scope="module")
def lens_set(simsurvey):
    """The simulated lens training set of the synthetic survey, built once (with its gallery)."""
    assert main(_argv(simsurvey["dir"], simsurvey["cfg"], gallery=True)) == 0
    return simsurvey["dir"] / "lens.h5"


def _read(path):
    names = ("images", "mask", "index", "id", "label", "split", "origin", "sim", "seed",
             "params/theta_e_arcsec", "params/arc_snr", "params/magnification")
    return io.read_arrays(path, names)


def test_simulated_lens_set_rows_splits_and_parameters(simsurvey, lens_set):
    d = simsurvey["dir"]
    got, attrs = _read(lens_set)
    origin, index = got["origin"], got["index"]
    real, sim, hard = origin == REAL, origin == SIMULATED, origin == HARD
    assert real.sum() == 12 and hard.sum() == 3 and sim.sum() == 15  # 12/(1-0.2) = 15 negatives
    assert (got["label"] == sim).all()
    assert not np.isin(index, simsurvey["known"]).any()  # known lenses: no host, no negative
    assert not np.isin(index[sim | hard], [0, 1]).any()  # point-like and flagged: no host
    assert np.array_equal(got["split"], simsurvey["split"][index])  # the host's id hash
    assert (got["sim"][sim] == b"lens").all() and set(got["sim"][hard]) <= {
        b"ring", b"spiral", b"pair", b"edgeon"}
    assert np.isfinite(got["params/theta_e_arcsec"][sim]).all()
    assert np.isnan(got["params/arc_snr"][real]).all()
    assert (got["params/magnification"][sim] > 1).all()
    assert np.array_equal(got["images"][real], simsurvey["stamps"][index[real]])
    assert not np.isclose(got["images"][sim], simsurvey["stamps"][index[sim]]).all()
    assert attrs["use"] == "simulated" and attrs["origin_names"][SIMULATED] == "simulated"
    assert attrs["counts"]["test"]["pos"] == int((sim & (got["split"] == 2)).sum())
    assert (d / "lens.h5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulated_rows_rebuild_from_their_seed(simsurvey, lens_set):
    """Stored seed + host = the stored image: parameters are those of what was rendered."""
    d = simsurvey["dir"]
    got, attrs = _read(lens_set)
    config = skyconfig.load(None, json.dumps(simsurvey["cfg"]))
    survey = scan([str(d / "st0.h5"), str(d / "st1.h5")],
                  [str(d / "cut0.h5"), str(d / "cut1.h5")], config)
    rows = np.flatnonzero(got["origin"] >= SIMULATED)[:4]
    hosts = got["index"][rows]
    raw, params = render_sims(simsurvey["raw"][hosts], hosts, np.char.decode(got["sim"][rows]),
                              got["seed"][rows], survey, Frames(config, survey),
                              config["training_set"], [])
    images, _ = normalise(raw, attrs["normalisation"])
    assert np.array_equal(images, got["images"][rows])
    assert np.array_equal(params["arc_snr"], got["params/arc_snr"][rows], equal_nan=True)
    assert main(_argv(d, simsurvey["cfg"], out="again.h5")) == 0
    again, _ = _read(d / "again.h5")
    for name, values in got.items():
        assert np.array_equal(again[name], values, equal_nan=values.dtype.kind == "f"), name


def test_both_adds_labelled_objects_and_merger_kinds(simsurvey):
    d = simsurvey["dir"]
    cfg = dict(simsurvey["cfg"], training_set=dict(simsurvey["cfg"]["training_set"],
                                                   use="both"))
    assert main(_argv(d, cfg, task="merger", out="merger.h5")) == 0
    got, attrs = _read(d / "merger.h5")
    labelled = got["origin"] == LABELLED
    assert labelled.sum() == 2 * N_SHARD  # every labelled object, with its label
    assert np.array_equal(np.sort(got["index"][labelled & (got["label"] == 1)]), [6, 22])
    sims = got["origin"] >= SIMULATED
    assert not np.isin(got["index"][sims | (got["origin"] == REAL)], [6, 22]).any()
    assert set(got["sim"][got["origin"] == SIMULATED]) == {b"merger"}
    assert set(got["sim"][got["origin"] == HARD]) == {b"projection"}
    assert attrs["use"] == "both" and attrs["simulator"] == "merger"


def test_simulated_set_errors(simsurvey, capsys):
    d = simsurvey["dir"]
    assert main(_argv(d, simsurvey["cfg"], cutouts=False, out="bad.h5")) == 2
    assert "--cutouts" in capsys.readouterr().err
    cfg = dict(simsurvey["cfg"], training_set=dict(simsurvey["cfg"]["training_set"],
                                                   hosts={"mag": [10.0, 11.0]}))
    assert main(_argv(d, cfg, out="bad.h5")) == 2
    assert "no object may host" in capsys.readouterr().err
    assert not (d / "bad.h5").exists()


def _with_blank_sky(d, n_blank=10):
    """Copies cutb{k}.h5 of the raw cutouts with a blank/ group of pure-noise stamps."""
    import shutil

    import h5py
    rng = np.random.default_rng(9)
    for k in range(2):
        shutil.copy(d / f"cut{k}.h5", d / f"cutb{k}.h5")
        with h5py.File(d / f"cutb{k}.h5", "a") as fh:
            grp = fh.create_group("blank")
            grp["images"] = rng.normal(0, 1.0, (n_blank, 2, S, S)).astype(np.float32)
            grp["pos_xy"] = np.column_stack([np.arange(n_blank) * 20.0 + 40, np.full(n_blank,
                                                                                  60.0)])
            grp["tile"] = np.full(n_blank, f"t{k}".encode())


def test_mergers_on_blank_sky_in_the_same_fraction_as_isolated_negatives(simsurvey):
    d = simsurvey["dir"]
    _with_blank_sky(d)
    cfg = dict(simsurvey["cfg"], training_set=dict(simsurvey["cfg"]["training_set"],
                                                   merger={"blank_fraction": 0.5}))
    argv = _argv(d, cfg, task="merger", out="blank.h5", cutouts=False)
    assert main(argv + ["--cutouts", str(d / "cutb0.h5"), str(d / "cutb1.h5")]) == 0
    got, attrs = io.read_arrays(d / "blank.h5", ("images", "index", "id", "label", "split",
                                                 "origin", "sim", "background", "seed"))
    blank = got["background"] == b"blank"
    assert set(got["background"]) == {b"blank", b"galaxy"}
    pos, neg = got["label"] == 1, got["label"] == 0
    # half the mergers, and half the negatives (isolated galaxies + projections), on blank sky
    assert blank[pos].sum() == round(0.5 * pos.sum())
    assert abs(blank[neg].mean() - 0.5) < 0.1
    iso = got["sim"] == b"isolated"
    assert iso.sum() == attrs["n_isolated"] > 0 and blank[iso].all() and neg[iso].all()
    assert (got["origin"][blank] >= SIMULATED).all()  # only simulations go on blank sky
    assert (got["index"][blank] == -1).all() and (got["id"][blank] == -1).all()
    assert (got["index"][~blank] >= 0).all() and np.isin(got["split"][blank], [0, 1, 2]).all()
    assert np.isfinite(got["images"]).all()
    # a merger on blank sky holds a simulated primary at the centre, far above the noise
    # (arcsinh(x / 3) of noise-normalised pixels: pure noise stays below ~1.5)
    rows = np.flatnonzero(blank & pos)
    assert (got["images"][rows][:, :, S // 2 - 1:S // 2 + 2, S // 2 - 1:S // 2 + 2].max(
        axis=(1, 2, 3)) > 2.0).all()
    # rebuilding from (host, kind, seed, blank stamp) renders the same pixels
    config = skyconfig.load(None, json.dumps(cfg))
    survey = scan([str(d / "st0.h5"), str(d / "st1.h5")],
                  [str(d / "cutb0.h5"), str(d / "cutb1.h5")], config)
    assert len(survey.blank["tile"]) == 20
    again = main(argv + ["--cutouts", str(d / "cutb0.h5"), str(d / "cutb1.h5")])
    assert again == 0
    got2, _ = io.read_arrays(d / "blank.h5", ("images", "background"))
    assert np.array_equal(got2["images"], got["images"])


def test_labels_only_sets_record_a_galaxy_background(simsurvey):
    d = simsurvey["dir"]
    cfg = dict(simsurvey["cfg"], training_set=dict(simsurvey["cfg"]["training_set"],
                                                   use="labels"))
    assert main(_argv(d, cfg, task="merger", out="lab.h5", cutouts=False)) == 0
    got, _ = io.read_arrays(d / "lab.h5", ("label", "background"))
    assert (got["background"] == b"galaxy").all() and len(got["label"]) == 2 * N_SHARD


def test_scarce_positive_labels_resolve_to_both_and_train(simsurvey, tmp_path):
    """A search that starts from a few known lenses (positives only, no labelled negatives):
    ``use: auto`` adds simulations, unlabelled objects are the negatives, and a model trains."""
    from skysift.learn import train

    d = simsurvey["dir"]
    known = Table({"objid": simsurvey["ids"][[4, 20]], "is_lens": [1, 1],
                   "is_merger": [0, 0]})
    known.write(tmp_path / "known.fits")
    cfg = dict(simsurvey["cfg"], survey=dict(simsurvey["cfg"]["survey"],
                                             labels=str(tmp_path / "known.fits")),
               training_set=dict(simsurvey["cfg"]["training_set"], use="auto"))
    assert main(_argv(d, cfg, out="scarce.h5")) == 0
    got, attrs = _read(d / "scarce.h5")
    assert (attrs["use"], attrs["use_requested"]) == ("both", "auto")
    labelled = got["origin"] == LABELLED
    assert sorted(got["index"][labelled].tolist()) == [4, 20]
    assert (got["label"][labelled] == 1).all()
    assert (got["origin"] == REAL).sum() > 0 and (got["origin"] == SIMULATED).sum() > 0
    assert attrs["realism"]["positives"]["n_real"] == 2  # too few labels to score realism
    assert attrs["realism"]["positives"]["auroc"] is None
    tcfg = {"seed": 3, "augment": {"on_the_fly": False},
            "models": [{"name": "cnn", "architecture": "baseline3"}],
            "train": {"epochs": 1, "batch_size": 16}}
    assert train.main(["--config-json", json.dumps(tcfg), "--task", "lens", "--trainset",
                       str(d / "scarce.h5"), "--out", str(tmp_path / "cnn.pt")]) == 0
    metrics = json.loads((tmp_path / "cnn.metrics.json").read_text())
    assert metrics["selected_on"] == "all"  # the labels hold one class: every row decides
    assert metrics["test"]["simulated"]["n_pos"] > 0


def test_psf_from_the_tiles_stars_paints_with_the_measured_width(simsurvey):
    """``psf.model: stars``: the stellar locus (one point source per tile here, Gaussian
    sigma 0.8 px) is fitted; tiles with fewer than ``min_stars`` take the pooled stars; the
    header's FWHM (1.0" in g) is not used and the measurement is recorded in the attrs."""
    d = simsurvey["dir"]
    tcfg = dict(simsurvey["cfg"]["training_set"], psf={"model": "stars", "min_stars": 2})
    cfg = dict(simsurvey["cfg"], training_set=tcfg)
    config = skyconfig.validate(json.loads(json.dumps(cfg)))
    survey = scan([str(d / "st0.h5"), str(d / "st1.h5")],
                  [str(d / "cut0.h5"), str(d / "cut1.h5")], config)
    frames = Frames(config, survey)
    frame, fwhm_ref = frames.frame(3)
    truth = 0.8 * 2.3548 * 0.263  # arcsec
    assert fwhm_ref == pytest.approx(truth, rel=0.1)
    centre = frame.kernels[0][len(frame.kernels[0]) // 2]
    half = np.sum(centre >= centre.max() / 2)  # pixels above half maximum along a row
    assert abs(half - truth / 0.263) <= 1.5
    assert main(_argv(d, cfg, out="stars.h5")) == 0
    _, attrs = _read(d / "stars.h5")
    got = attrs["psf_stars"]
    assert got["tiles_own_stars"] == 0 and got["tiles_pooled"] == 2
    assert all(t["n_stars"] == 2 for t in got["tiles"].values())


def test_invisible_positives_are_counted_and_not_drawn(simsurvey, lens_set):
    """A positive no one could see is not a training example: with thresholds no arc can
    reach, every simulated lens is counted invisible and none is written; with
    drop_invisible false they are all written and still counted."""
    d = simsurvey["dir"]
    got, attrs = _read(lens_set)
    sim = got["origin"] == SIMULATED
    assert attrs["invisible_dropped"] and attrs["visible_fraction"] == 1.0
    assert attrs["invisible_positives"]["total"] == 0
    fwhm = io.read_arrays(lens_set, ["params/psf_fwhm_arcsec"])[0]["params/psf_fwhm_arcsec"]
    assert (got["params/theta_e_arcsec"][sim] > fwhm[sim]).all()  # no arc inside the PSF core
    tset = dict(simsurvey["cfg"]["training_set"], visible_arc_snr=1e9)
    assert main(_argv(d, dict(simsurvey["cfg"], training_set=tset), out="dim.h5")) == 0
    dim, dattrs = _read(d / "dim.h5")
    assert (dim["origin"] != SIMULATED).all() and dim["images"].shape[0] == dim["label"].size
    assert dattrs["invisible_positives"]["arc_snr"] == sim.sum() == 15
    assert dattrs["visible_fraction"] == 0.0 and (dim["label"] == 0).all()
    assert np.array_equal(np.sort(dim["index"]), np.sort(got["index"][~sim]))
    keep = dict(tset, drop_invisible=False)
    assert main(_argv(d, dict(simsurvey["cfg"], training_set=keep), out="kept.h5")) == 0
    kept, kattrs = _read(d / "kept.h5")
    assert (kept["origin"] == SIMULATED).sum() == 15
    assert kattrs["invisible_positives"]["total"] == 15 and not kattrs["invisible_dropped"]


def test_lens_hosts_from_the_reddest_fraction(simsurvey, lens_set):
    d = simsurvey["dir"]
    tset = dict(simsurvey["cfg"]["training_set"],
                lens=dict(simsurvey["cfg"]["training_set"]["lens"], host_red_fraction=0.3))
    assert main(_argv(d, dict(simsurvey["cfg"], training_set=tset), out="red.h5")) == 0
    red, attrs = _read(d / "red.h5")
    base, battrs = _read(lens_set)
    config = skyconfig.load(None, json.dumps(simsurvey["cfg"]))
    mag = scan([str(d / "st0.h5"), str(d / "st1.h5")], [str(d / "cut0.h5"), str(d / "cut1.h5")],
               config).cols["mag"]
    colour = mag[:, 0] - mag[:, 1]  # g - r: the residual's bands with two bands
    sims = red["origin"] >= SIMULATED
    assert attrs["host_cuts"]["not among the reddest"] > 0
    assert attrs["n_hosts"] < battrs["n_hosts"]
    cut = np.quantile(colour[base["index"][base["origin"] >= SIMULATED]], 0.5)
    assert (colour[red["index"][sims]] > cut).mean() > 0.9


def test_graded_false_positives_lead_the_real_negatives(simsurvey, tmp_path):
    """use: simulated with review.grades: every object graded N (outside the test split) is a
    real negative row, ahead of the random draw that max_negatives (12 of ~28) would make."""
    d, ids, split = simsurvey["dir"], simsurvey["ids"], simsurvey["split"]
    graded = [i for i in range(len(ids)) if split[i] != 2 and i not in (4, 6, 20, 22)][-6:]
    sheet = tmp_path / "round1.csv"
    sheet.write_text("rank,index,id,ra,dec,score,grade\n" + "".join(
        f"{r},{i},{ids[i]},0,0,1,N\n" for r, i in enumerate(graded, start=1)))
    cfg = dict(simsurvey["cfg"], review={"grades": [{"file": str(sheet), "task": "lens"}]},
               survey=dict(simsurvey["cfg"]["survey"], labels=None, kind="files"))  # grades only
    from skysift.survey.hashsplit import assign_split
    kept = [i for i in graded if assign_split(ids[i:i + 1], {"train": 0.7, "val": 0.15,
                                                             "test": 0.15}, "skysift-v1")[0] != 2]
    assert len(kept) >= 3
    assert main(_argv(d, cfg, out="graded.h5")) == 0
    got, attrs = io.read_arrays(d / "graded.h5", ("index", "origin", "label"))
    real = set(got["index"][got["origin"] == REAL].tolist())
    assert set(kept) <= real and attrs["n_graded_false_positives"] == len(kept)
    ungraded = dict(cfg, review={"grades": []})  # the same set without the grades
    assert main(_argv(d, ungraded, out="ungraded.h5")) == 0
    got, _ = io.read_arrays(d / "ungraded.h5", ("index", "origin"))
    assert not set(kept) <= set(got["index"][got["origin"] == REAL].tolist())
