"""The CLI contract for every bad input a user can cause (docs/reliability.md, issue 8).

Each case runs the real ``main(argv)`` of every step that reads the bad input and asserts:
exit code 2, exactly one ``skysift: error:`` message on stderr naming the file or config key
and the fix, and no output (neither the file nor its ``.partial``) left behind. The good
inputs are made once by the real steps (index, cutouts, preprocess, split, trainset) on a
two-tile synthetic survey; each case copies the one input it spoils.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from survey_helpers import BANDS, make_wcs, write_band, write_tile

from skysift import __main__ as entry
from skysift import cli
from skysift import config as skyconfig
from skysift.io import partial_path

SHAPE = (60, 60)
SIZE = 16  # the smallest stamp the models take (skysift.learn.models.MIN_STAMP_SIZE_PIX)


def _tile_wcs(k):
    return make_wcs(150.0 + k * 60 * 0.5 / 3600, 2.0, SHAPE, pixscale_arcsec=0.5)


def _base_config(root: Path, **survey) -> dict:
    conf = {"survey": {"kind": "files", "tiles": str(root / "tiles" / "{tile}_{band}.fits"),
                       "bands": BANDS, "catalog": str(root / "cat.fits"),
                       "labels": str(root / "truth.fits"), **survey},
            "cutouts": {"stamp_size_pix": SIZE},
            "tasks": [{"name": "lens", "label": "is_lens"}],
            "evaluate": {"prevalence": {"lens": 0.01}},
            "training_set": {"use": "labels"},
            "train": {"epochs": 1, "threads": 1, "workers": 0}}
    return skyconfig.validate(conf)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A two-tile survey and every intermediate product, made by the real CLIs."""
    from skysift.learn import train
    from skysift.sim import trainset
    from skysift.stamps import cutouts, preprocess
    from skysift.survey import index, split

    root = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(3)
    for k in range(2):
        write_tile(root, f"t{k}", _tile_wcs(k), SHAPE, rng=rng)
    n = 40
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    ra_deg, dec_deg = [], []
    for k in range(2):  # objects well inside each tile
        x, y = rng.uniform(12, 48, n // 2), rng.uniform(12, 48, n // 2)
        ra, dec = _tile_wcs(k).pixel_to_world_values(x, y)
        ra_deg.append(ra)
        dec_deg.append(dec)
    Table({"objid": ids, "ra": np.concatenate(ra_deg), "dec": np.concatenate(dec_deg)}).write(
        root / "cat.fits")
    Table({"objid": ids, "is_lens": np.arange(n) % 2}).write(root / "truth.fits")
    conf = _base_config(root)
    text = json.dumps(conf)
    assert index.main(["--config-json", text, "--out-dir", str(root / "index"), "--quiet"]) == 0
    shard = json.loads((root / "index" / "shards.json").read_text())["shards"][0]["shard"]
    assert cutouts.main(["--config-json", text, "--shard", shard, "--index-dir",
                         str(root / "index"), "--out", str(root / "cutouts.h5"),
                         "--quiet"]) == 0
    assert preprocess.main(["--config-json", text, "--in", str(root / "cutouts.h5"),
                            "--out", str(root / "stamps.h5"), "--quiet"]) == 0
    assert split.main(["--config-json", text, "--out", str(root / "split.fits"),
                       "--quiet"]) == 0
    assert trainset.main(["--config-json", text, "--task", "lens", "--stamps",
                          str(root / "stamps.h5"), "--split", str(root / "split.fits"),
                          "--out", str(root / "lens.h5"), "--quiet"]) == 0
    assert train.main(["--config-json", text, "--task", "lens", "--trainset",
                       str(root / "lens.h5"), "--out", str(root / "model.pt"), "--quiet"]) == 0
    return root, conf, shard


# --------------------------------------------------------------------------- spoilers
# Each takes (good root, a fresh directory) and returns (config, {input name: path}, needle):
# the config and inputs to run with, and what the message must name.

def _copy_tiles(root: Path, work: Path) -> Path:
    shutil.copytree(root / "tiles", work / "tiles")
    return work / "tiles"


def _with_tiles(root, work):
    return _base_config(root, tiles=str(work / "tiles" / "{tile}_{band}.fits"))


def truncated_tile(root, work):
    path = _copy_tiles(root, work) / "t1_r.fits"
    path.write_bytes(path.read_bytes()[:4000])
    return _with_tiles(root, work), {}, str(path)


def non_fits_tile(root, work):
    path = _copy_tiles(root, work) / "t1_r.fits"
    path.write_text("SIMPLE? no, this is a text file\n")
    return _with_tiles(root, work), {}, str(path)


def tile_without_wcs(root, work):
    path = _copy_tiles(root, work) / "t1_g.fits"
    path.unlink()
    write_band(path, np.zeros(SHAPE), WCS(naxis=2))
    return _with_tiles(root, work), {}, str(path)


def non_celestial_wcs(root, work):
    path = _copy_tiles(root, work) / "t0_g.fits"
    path.unlink()
    w = WCS(naxis=2)
    w.wcs.ctype = ["LINEAR", "LINEAR"]
    w.wcs.cdelt = [1.0, 1.0]
    write_band(path, np.zeros(SHAPE), w)
    return _with_tiles(root, work), {}, str(path)


def bands_of_different_shapes(root, work):
    path = _copy_tiles(root, work) / "t0_r.fits"
    path.unlink()
    write_band(path, np.zeros((SHAPE[0] + 4, SHAPE[1])), _tile_wcs(0))
    return _with_tiles(root, work), {}, str(path)


def missing_band_file(root, work):
    path = _copy_tiles(root, work) / "t1_g.fits"
    path.unlink()
    conf = _with_tiles(root, work)
    conf["strict"] = True  # without strict the tile's objects are rejects (tests/survey)
    return conf, {}, str(path)


def _catalog(root, work, table):
    path = work / "cat.fits"
    table.write(path)
    return _base_config(root, catalog=str(path)), {}, str(path)


def empty_catalog(root, work):
    return _catalog(root, work, Table.read(root / "cat.fits")[:0])


def duplicate_ids(root, work):
    cat = Table.read(root / "cat.fits")
    cat["objid"][7] = cat["objid"][3]
    return _catalog(root, work, cat)


def missing_column(root, work):
    cat = Table.read(root / "cat.fits")
    cat.rename_column("dec", "DEC_J2000")
    conf, paths, path = _catalog(root, work, cat)
    return conf, paths, (path, "survey.columns.dec")


def _labels(root, work, values):
    path = work / "truth.fits"
    Table({"objid": Table.read(root / "truth.fits")["objid"], "is_lens": values}).write(path)
    return _base_config(root, labels=str(path)), {}, (str(path), "is_lens")


def labels_not_0_1(root, work):
    return _labels(root, work, np.arange(40) % 3)


def no_positive_example(root, work):
    conf, paths, (path, _) = _labels(root, work, np.zeros(40, np.int64))
    return conf, paths, (path, "'lens'")


def unknown_config_key(root, work):
    conf = _base_config(root)
    conf["survey"]["catalgo"] = "x.fits"
    return conf, {}, ("'catalgo'", "did you mean 'catalog'")


def _old_layout(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as fh:
        fh.attrs["h5_layout_version"] = 0
    return dst


def old_layout_hdf5(root, work):
    paths = {name: _old_layout(root / f"{name}.h5", work / f"{name}.h5")
             for name in ("cutouts", "stamps", "lens")}
    return _base_config(root), paths, ("layout version 0", "re-run")


def corrupt_checkpoint(root, work):
    path = work / "lens.pt"
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    conf = _base_config(root)
    conf["models"] = [{"name": "imported", "architecture": "baseline3", "checkpoint": str(path)}]
    conf = skyconfig.validate(conf)
    return conf, {"model": path}, (str(path), "re-run")


def stamp_too_small(root, work):
    """A training set of 12-pixel stamps, made by the real steps."""
    from skysift.sim import trainset
    from skysift.stamps import cutouts, preprocess

    conf = _base_config(root)
    conf["cutouts"]["stamp_size_pix"] = 12
    text = json.dumps(conf)
    shard = json.loads((root / "index" / "shards.json").read_text())["shards"][0]["shard"]
    assert cutouts.main(["--config-json", text, "--shard", shard, "--index-dir",
                         str(root / "index"), "--out", str(work / "c.h5"), "--quiet"]) == 0
    assert preprocess.main(["--config-json", text, "--in", str(work / "c.h5"), "--out",
                            str(work / "s.h5"), "--quiet"]) == 0
    assert trainset.main(["--config-json", text, "--task", "lens", "--stamps",
                          str(work / "s.h5"), "--split", str(root / "split.fits"), "--out",
                          str(work / "lens.h5"), "--quiet"]) == 0
    return conf, {"lens": work / "lens.h5"}, ("stamp_size_pix", "12")


# --------------------------------------------------------------------------- the steps

def _argv(step, root, shard, paths, out):
    """The argv of ``step`` reading the good inputs of ``root`` unless ``paths`` spoils one,
    with every output under ``out``; returns (argv, output paths)."""
    stamps = str(paths.get("stamps", root / "stamps.h5"))
    lens = str(paths.get("lens", root / "lens.h5"))
    if step == "check":
        return ["--report", str(out / "check.json")], [out / "check.json"]
    if step == "index":
        return ["--out-dir", str(out / "index")], [out / "index"]
    if step == "cutouts":
        return (["--shard", shard, "--index-dir", str(root / "index"), "--out",
                 str(out / "c.h5")], [out / "c.h5", out / "c.rejects.ecsv"])
    if step == "preprocess":
        return ["--in", str(paths.get("cutouts", root / "cutouts.h5")), "--out",
                str(out / "s.h5")], [out / "s.h5"]
    if step == "split":
        return ["--out", str(out / "split.fits")], [out / "split.fits"]
    if step == "trainset":
        return (["--task", "lens", "--stamps", stamps, "--split", str(root / "split.fits"),
                 "--out", str(out / "lens.h5"), "--gallery", str(out / "lens.png")],
                [out / "lens.h5", out / "lens.png"])
    if step == "augment":
        return ["--in", lens, "--out", str(out / "aug.h5")], [out / "aug.h5"]
    if step == "train":
        model = ["--model", "imported"] if "model" in paths else []
        return (["--task", "lens", *model, "--trainset", lens, "--out", str(out / "m.pt")],
                [out / "m.pt", out / "m.pt.last", out / "m.metrics.json", out / "m.curve.png"])
    if step == "infer":
        model = paths.get("model", root / "model.pt")
        return (["--stamps", stamps, "--models", str(model), "--out", str(out / "sc.fits")],
                [out / "sc.fits"])
    raise AssertionError(step)


CASES = {
    # bad input: the steps that read it
    "truncated_tile": (truncated_tile, ["check", "index", "cutouts"]),
    "non_fits_tile": (non_fits_tile, ["check", "index", "cutouts"]),
    "tile_without_wcs": (tile_without_wcs, ["check", "index", "cutouts"]),
    "non_celestial_wcs": (non_celestial_wcs, ["check", "index", "cutouts"]),
    "bands_of_different_shapes": (bands_of_different_shapes, ["check", "index", "cutouts"]),
    "missing_band_file": (missing_band_file, ["check", "index", "cutouts"]),
    "empty_catalog": (empty_catalog, ["check", "index", "split"]),
    "duplicate_ids": (duplicate_ids, ["check", "index", "split"]),
    "missing_column": (missing_column, ["check", "index", "split"]),
    "labels_not_0_1": (labels_not_0_1, ["trainset"]),
    "no_positive_example": (no_positive_example, ["trainset"]),
    "unknown_config_key": (unknown_config_key,
                           ["check", "index", "cutouts", "preprocess", "split", "trainset",
                            "augment", "train", "infer"]),
    "old_layout_hdf5": (old_layout_hdf5, ["preprocess", "trainset", "augment", "train",
                                          "infer"]),
    "corrupt_checkpoint": (corrupt_checkpoint, ["train", "infer"]),
    "stamp_too_small": (stamp_too_small, ["train"]),
}


def _left_behind(outputs):
    left = []
    for path in outputs:
        for p in (path, partial_path(path)):
            if p.is_dir():
                left += [q for q in p.rglob("*") if q.is_file()]
            elif p.exists():
                left.append(p)
    return left


@pytest.mark.parametrize("case,step", [(c, s) for c, (_, steps) in CASES.items() for s in steps])
def test_bad_input_exits_2_with_one_message_and_no_output(good, tmp_path, capsys, case, step):
    root, _, shard = good
    spoil, _ = CASES[case]
    work = tmp_path / "in"
    work.mkdir()
    conf, paths, needles = spoil(root, work)
    out = tmp_path / "out"
    argv, outputs = _argv(step, root, shard, paths, out)
    capsys.readouterr()
    module = entry.step_module(step)
    code = module.main(["--config-json", json.dumps(conf), "--quiet", *argv])
    err = capsys.readouterr().err
    messages = [line for line in err.splitlines() if line.startswith("skysift: error:")]
    assert code == 2, err
    assert len(messages) == 1, err
    # check lists every problem it finds (log lines) before its one closing error
    where = err if step == "check" else messages[0]
    for needle in (needles if isinstance(needles, tuple) else (needles,)):
        assert needle in where, err
    assert _left_behind(outputs) == []


def test_every_step_takes_strict_and_sets_the_config_key(tmp_path):
    for step in entry.STEPS:
        p = entry.step_module(step).parser()
        assert "--strict" in p.format_help(), step
    p = cli.parser("test")
    assert cli.load_config(p.parse_args(["--strict"]))["strict"] is True
    assert cli.load_config(p.parse_args([]))["strict"] is False


def test_strict_reaches_the_index_through_the_shared_option(good, tmp_path, capsys):
    root, conf, _ = good
    cat = Table.read(root / "cat.fits")
    cat["dec"][5] = 95.0  # impossible: a data problem, rejected unless strict
    cat.write(tmp_path / "cat.fits")
    text = json.dumps(_base_config(root, catalog=str(tmp_path / "cat.fits")))
    from skysift.survey import index as survey
    assert survey.main(["--config-json", text, "--out-dir", str(tmp_path / "a"), "--quiet"]) == 0
    rejects = Table.read(tmp_path / "a" / "rejects.ecsv")
    assert rejects["index"].tolist() == [5]
    capsys.readouterr()
    assert survey.main(["--config-json", text, "--out-dir", str(tmp_path / "b"), "--quiet",
                        "--strict"]) == 2
    assert "cat.fits" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_label_ids_not_in_the_catalog_are_counted_or_fatal_with_strict(good, tmp_path, caplog):
    from skysift.errors import SurveyError
    from skysift.survey.labels import load_labels, unmatched_label_ids

    root, conf, _ = good
    ids = Table.read(root / "truth.fits")["objid"].tolist() + [7, 8]
    Table({"objid": ids, "is_lens": [0, 1] * (len(ids) // 2)}).write(tmp_path / "t.fits")
    conf = _base_config(root, labels=str(tmp_path / "t.fits"))
    catalog_ids = np.asarray(Table.read(root / "cat.fits")["objid"])
    assert unmatched_label_ids(np.asarray(ids), catalog_ids).tolist() == [7, 8]
    labels = load_labels(conf, 0, conf["tasks"][0], catalog_ids=catalog_ids)
    assert labels.ids.size == len(ids)
    assert "2 of 42 label ids are not in the catalog" in caplog.text
    conf["strict"] = True
    with pytest.raises(SurveyError, match=r"t\.fits: 2 of 42 label ids .*\[7, 8\]"):
        load_labels(conf, 0, conf["tasks"][0], catalog_ids=catalog_ids)
    caplog.clear()
    load_labels(conf, 0, conf["tasks"][0])  # without the catalog's ids: no join, no check
    assert "not in the catalog" not in caplog.text
