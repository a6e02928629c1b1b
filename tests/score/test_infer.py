"""Inference: streams stamps, keeps ids verbatim, refuses stamps the model was not made for."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from skysift.config import load
from skysift.errors import DataError
from skysift.io import write_stamps
from skysift.learn import checkpoints
from skysift.learn.checkpoints import save_checkpoint
from skysift.learn.models import build_model
from skysift.learn.symmetry import d4_apply
from skysift.score import batches, infer

SIZE = 16
NORM = {"background": "border_median", "scale": "border_mad", "stretch": "arcsinh",
        "arcsinh_softening": 3.0, "chunk_objects": 256}
ATTRS = {"bands": ["g", "r", "i"], "stamp_size_pix": SIZE, "pixscale_arcsec": 0.263,
         "normalisation": NORM, "tile": "t0012"}
CONFIG = {"infer": {"batch_size": 7}, "train": {"threads": 1}}


def write_model(path, task, seed=0, arch="baseline3", **meta_changes):
    torch.manual_seed(seed)
    model = build_model(arch, 3, SIZE)
    meta = {"architecture": arch, "task": task, "model": "cnn", "bands": ["g", "r", "i"],
            "pixscale_arcsec": 0.263, "stamp_size_pix": SIZE, "normalisation": NORM,
            "in_channels": 3, "provenance": {"seed": seed}, **meta_changes}
    save_checkpoint(path, {"model_state": model.state_dict(), "optimizer_state": {},
                           "scheduler_state": {}, "scaler_state": {}, "rng_state": {},
                           "epoch": 1, "config": load(), "meta": meta})
    return model.eval()


def write_tile(path, n=20, ids=None, **attr_changes):
    rng = np.random.default_rng(3)
    ids = np.arange(n, dtype=np.int64) + 2**62 + 1 if ids is None else ids
    images = rng.normal(size=(n, 3, SIZE, SIZE)).astype(np.float32)
    write_stamps(path, {"images": images, "mask": np.ones(images.shape, np.uint8),
                        "flags": (np.arange(n) % 4).astype(np.uint8),
                        "index": np.arange(n, dtype=np.int64) * 3 + 5, "id": ids,
                        "ra": np.linspace(35, 35.1, n), "dec": np.linspace(-5, -4.9, n),
                        "pos_xy": np.zeros((n, 2))}, {**ATTRS, **attr_changes})
    return images


@pytest.fixture
def models(tmp_path):
    return {task: (write_model(tmp_path / f"{task}.pt", task, seed), tmp_path / f"{task}.pt")
            for seed, task in enumerate(["lens", "merger"])}


def run(tmp_path, models, stamps="t.h5", config=CONFIG):
    return infer.main(["--config-json", json.dumps(config), "--stamps", str(tmp_path / stamps),
                       "--models", *[str(p) for _, p in models.values()],
                       "--out", str(tmp_path / "scores.fits")])


def test_scores_table_keeps_ids_and_matches_the_models(tmp_path, models):
    images = write_tile(tmp_path / "t.h5")
    assert run(tmp_path, models) == 0
    table = Table.read(tmp_path / "scores.fits")
    assert table.colnames == ["index", "id", "ra", "dec", "tile", "flags",
                              "score_lens_cnn", "score_merger_cnn", "selected"]
    assert table["selected"].dtype == bool and table["selected"].all()
    assert table["id"].dtype.kind == "i" and table["id"][0] == 2**62 + 1
    assert list(table["id"]) == [2**62 + 1 + i for i in range(20)]
    assert list(table["index"]) == list(np.arange(20) * 3 + 5)
    assert set(table["tile"]) == {"t0012"} and list(table["flags"]) == list(np.arange(20) % 4)
    assert table["score_lens_cnn"].dtype.kind == "f"
    assert table["score_lens_cnn"].dtype.itemsize == 4
    for task, (model, _) in models.items():
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        np.testing.assert_allclose(table[f"score_{task}_cnn"], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(table["score_lens_cnn"], table["score_merger_cnn"])
    header = fits.getheader(tmp_path / "scores.fits", 1)
    assert header["MTASK1"] == "lens" and header["MTASK2"] == "merger"
    assert header["MNAME1"] == "cnn"
    assert header["MSHA1"] == hashlib.sha256((tmp_path / "lens.pt").read_bytes()).hexdigest()
    assert header["SEED"] == 42 and "config_hash" in header and "git_commit" in header


def test_string_ids_survive_verbatim(tmp_path, models):
    ids = np.char.encode(np.array([f"J0{i}+ñ-{'x' * i}" for i in range(5)]), "utf-8")
    write_tile(tmp_path / "t.h5", n=5, ids=ids)
    assert run(tmp_path, models) == 0
    raw = fits.getdata(tmp_path / "scores.fits", 1)["id"]
    assert [v.encode() if isinstance(v, str) else v for v in raw] == list(ids)


def test_zero_object_tile_gives_an_empty_table_with_every_column(tmp_path, models):
    write_tile(tmp_path / "t.h5", n=0)
    assert run(tmp_path, models) == 0
    table = Table.read(tmp_path / "scores.fits")
    assert len(table) == 0
    assert {"index", "id", "ra", "dec", "tile", "flags", "score_lens_cnn", "score_merger_cnn"} \
        <= set(table.colnames)


@pytest.mark.parametrize("change, what", [
    ({"bands": ["g", "r", "z"]}, "bands"),
    ({"normalisation": {**NORM, "stretch": "linear"}}, "normalisation"),
    ({"pixscale_arcsec": 0.168}, "pixscale_arcsec 0.168 (model: 0.263)"),
])
def test_refuses_stamps_made_differently(tmp_path, models, capsys, change, what):
    write_tile(tmp_path / "t.h5", **change)
    assert run(tmp_path, models) == 2
    err = capsys.readouterr().err
    assert what in err and "do not match" in err and not (tmp_path / "scores.fits").exists()


def test_refuses_another_stamp_size():
    meta = {"task": "lens", "bands": ["g"], "stamp_size_pix": 48, "normalisation": NORM}
    with pytest.raises(DataError, match="stamp_size_pix 64"):
        infer.check_compatible(meta, {"bands": ["g"], "stamp_size_pix": 64,
                                      "normalisation": NORM}, "x.h5")
    # HDF5 chunking is not part of the normalisation
    infer.check_compatible(meta, {"bands": ["g"], "stamp_size_pix": 48,
                                  "normalisation": {**NORM, "chunk_objects": 8}}, "x.h5")


def test_corrupt_or_missing_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "lens.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"lens\.pt: not a readable.*re-run the train rule"):
        checkpoints.load_model(bad, "cpu")
    with pytest.raises(DataError, match=r"nope\.pt: checkpoint not found"):
        checkpoints.load_model(tmp_path / "nope.pt", "cpu")
    torch.save({"model_state": {}}, bad)
    with pytest.raises(DataError, match="lacks"):
        checkpoints.load_model(bad, "cpu")


def test_score_does_not_depend_on_batch_size():
    torch.manual_seed(0)
    model = build_model("baseline3", 3, SIZE)
    model.train()  # score must switch dropout off itself
    x = np.random.default_rng(0).normal(size=(9, 3, SIZE, SIZE)).astype(np.float32)
    one, many = batches.score(model, x, 1, "cpu"), batches.score(model, x, 64, "cpu")
    assert one.shape == (9,) and one.dtype == np.float32
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-6)


def test_several_models_of_one_task_fill_their_own_columns(tmp_path):
    write_tile(tmp_path / "t.h5", n=9)
    a = write_model(tmp_path / "a.pt", "lens", 0, model="cnn")
    b = write_model(tmp_path / "b.pt", "lens", 1, arch="d4", model="inv")
    models = {"a": (a, tmp_path / "a.pt"), "b": (b, tmp_path / "b.pt")}
    assert run(tmp_path, models) == 0
    table = Table.read(tmp_path / "scores.fits")
    assert table.colnames[-3:] == ["score_lens_cnn", "score_lens_inv", "selected"]
    x = torch.from_numpy(write_tile(tmp_path / "t.h5", n=9))
    with torch.no_grad():
        np.testing.assert_allclose(table["score_lens_inv"], b(x).numpy(), rtol=1e-4, atol=1e-5)


def test_the_same_model_twice_is_refused(tmp_path, capsys):
    write_tile(tmp_path / "t.h5", n=3)
    write_model(tmp_path / "a.pt", "lens", 0)
    write_model(tmp_path / "b.pt", "lens", 1)
    models = {"a": (None, tmp_path / "a.pt"), "b": (None, tmp_path / "b.pt")}
    assert run(tmp_path, models) == 2
    assert "score_lens_cnn" in capsys.readouterr().err


def test_tta_of_an_invariant_model_has_no_spread(tmp_path):
    images = write_tile(tmp_path / "t.h5", n=9)
    model = write_model(tmp_path / "inv.pt", "lens", 0, arch="d4", model="inv")
    config = {**CONFIG, "infer": {"batch_size": 4, "tta": True}}
    assert run(tmp_path, {"inv": (model, tmp_path / "inv.pt")}, config=config) == 0
    table = Table.read(tmp_path / "scores.fits")
    assert table.colnames[-3:] == ["score_lens_inv", "score_std_lens_inv", "selected"]
    with torch.no_grad():
        plain = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(table["score_lens_inv"], plain, rtol=1e-4, atol=1e-5)
    assert np.asarray(table["score_std_lens_inv"]).max() < 1e-4 * np.abs(plain).max() + 1e-5
    assert fits.getheader(tmp_path / "scores.fits", 1)["TTA"] == 1


def test_tta_logit_is_the_mean_of_the_eight_orientations(tmp_path, models):
    images = torch.from_numpy(write_tile(tmp_path / "t.h5", n=10))
    config = {**CONFIG, "infer": {"batch_size": 3, "tta": True}}
    assert run(tmp_path, models, config=config) == 0
    table = Table.read(tmp_path / "scores.fits")
    for task, (model, _) in models.items():
        with torch.no_grad():
            views = torch.stack([model(d4_apply(images, k)) for k in range(8)]).numpy()
        assert views.std(axis=0).min() > 1e-4  # baseline3 is not invariant
        np.testing.assert_allclose(table[f"score_{task}_cnn"], views.mean(axis=0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(table[f"score_std_{task}_cnn"], views.std(axis=0),
                                   rtol=1e-3, atol=1e-5)


def write_catalog(path, n_rows=70, ids=None):
    """A survey catalog whose rows 3 i + 5 hold the stamps of write_tile (ids 2**62 + 1 + i)."""
    objid = np.arange(n_rows, dtype=np.int64) + 10**12 if ids is None else ids
    rows = np.arange(20) * 3 + 5
    objid[rows] = np.arange(20) + 2**62 + 1
    mag_r = np.linspace(17, 24, n_rows)
    mag_r[rows[4]] = np.nan
    Table({"objid": objid, "ra": np.zeros(n_rows), "dec": np.zeros(n_rows),
           "mag_r": mag_r}).write(path)
    return mag_r[rows]


def select_config(tmp_path, cuts):
    return {**CONFIG, "infer": {"batch_size": 4, "select": cuts},
            "survey": {"catalog": str(tmp_path / "cat.fits"),
                       "columns": {"id": "objid", "ra": "ra", "dec": "dec"}}}


def test_select_scores_only_the_cut_and_keeps_the_rest_with_nan(tmp_path, models, caplog):
    images = torch.from_numpy(write_tile(tmp_path / "t.h5"))
    mag_r = write_catalog(tmp_path / "cat.fits")
    config = select_config(tmp_path, [{"column": "mag_r", "range": [None, 20.5]}])
    assert run(tmp_path, models, config=config) == 0
    table = fits.getdata(tmp_path / "scores.fits", 1)
    keep = np.isfinite(mag_r) & (mag_r <= 20.5)
    assert 3 <= keep.sum() < 19  # a real cut; the NaN magnitude fails it
    assert len(table) == 20 and list(table["selected"]) == list(keep)
    assert np.isnan(table["score_lens_cnn"][~keep]).all()
    with torch.no_grad():
        expected = models["lens"][0](images[torch.from_numpy(keep)]).numpy()
    np.testing.assert_allclose(table["score_lens_cnn"][keep], expected, rtol=1e-4, atol=1e-5)
    assert fits.getheader(tmp_path / "scores.fits", 1)["HIERARCH n_selected"] == keep.sum()


def test_select_checks_the_catalog(tmp_path, models, capsys):
    write_tile(tmp_path / "t.h5")
    write_catalog(tmp_path / "cat.fits")
    assert run(tmp_path, models, config=select_config(
        tmp_path, [{"column": "mag_z", "range": [None, 20]}])) == 2
    assert "mag_z" in capsys.readouterr().err
    cat = Table.read(tmp_path / "cat.fits")
    cat["objid"][5] += 1  # row 5 holds the first stamp's object: the catalog was edited since
    cat.write(tmp_path / "cat.fits", overwrite=True)
    assert run(tmp_path, models, config=select_config(
        tmp_path, [{"column": "mag_r", "range": [None, 20]}])) == 2
    assert "catalog changed" in capsys.readouterr().err
    assert not (tmp_path / "scores.fits").exists()


class RunsOutOfMemory(torch.nn.Module):
    """Sums the pixels; raises torch's out-of-memory error above ``limit`` stamps."""

    def __init__(self, limit: int, error=torch.cuda.OutOfMemoryError,
                 message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
        super().__init__()
        self.limit, self.error, self.message, self.sizes = limit, error, message, []

    def forward(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise self.error(self.message)
        return x.sum(dim=(1, 2, 3))


def test_batch_size_halves_on_out_of_memory(caplog):
    x = np.random.default_rng(0).normal(size=(50, 3, SIZE, SIZE)).astype(np.float32)
    model = RunsOutOfMemory(limit=10)
    batch = batches.BatchSize(64)
    logits = batches.score(model, x, batch, "cpu")
    np.testing.assert_allclose(logits, x.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert batch.size == 8 and batch.n_backoffs == 3  # 64 -> 32 -> 16 -> 8
    assert max(model.sizes[3:]) <= 8  # and stays there
    assert "halved to 8" in caplog.text
    cpu = RunsOutOfMemory(limit=5, error=RuntimeError,
                          message="DefaultCPUAllocator: not enough memory: you tried to "
                                  "allocate 1 GB. Buy new RAM!: out of memory")
    np.testing.assert_allclose(batches.score(cpu, x, 16, "cpu"), logits, rtol=1e-6)
    with pytest.raises(DataError, match="single stamp"):
        batches.score(RunsOutOfMemory(limit=0), x, 4, "cpu")
    with pytest.raises(RuntimeError, match="shape"):  # other errors are not out-of-memory
        batches.score(RunsOutOfMemory(limit=0, error=RuntimeError, message="bad shape"), x, 4,
                    "cpu")


def test_batch_size_auto_is_the_cpu_default(tmp_path, models):
    write_tile(tmp_path / "t.h5", n=5)
    assert run(tmp_path, models, config={**CONFIG, "infer": {"batch_size": "auto"}}) == 0
    header = fits.getheader(tmp_path / "scores.fits", 1)
    assert header["HIERARCH batch_size"] == infer.AUTO_BATCH["cpu"]
