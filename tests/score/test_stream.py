"""Scoring straight from tiles: the same table as cutouts -> preprocess -> infer --stamps,
decoding in a bounded pool, and per-object embeddings."""

from __future__ import annotations

import json
from concurrent.futures import Future

import h5py
import numpy as np
import pytest
import torch
from astropy.table import Table
from survey_helpers import BANDS, gaussian, make_config, make_wcs, write_tile

from skysift.config import load
from skysift.learn.checkpoints import save_checkpoint
from skysift.learn.models import build_model
from skysift.score import infer, stream
from skysift.stamps.cutouts import cut_objects
from skysift.stamps.preprocess import preprocess_file
from skysift.survey.index import build_index, write_index
from skysift.survey.shards import read_assignment_rows

SIZE = 16
SHAPE = (60, 72)


def _images(rng, xy):
    """Noise plus a blob of random width and brightness at each object, per band."""
    images = rng.normal(size=(len(BANDS),) + SHAPE).astype(np.float32) * 2 + 10
    for x, y in xy:
        amp, sigma = rng.uniform(5, 80), rng.uniform(0.8, 3)
        for b in range(len(BANDS)):
            images[b] += gaussian(SHAPE, x, y, sigma=sigma, amp=amp * (1 + b))
    return images


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Four fpack tiles (one with a band without a valid pixel), 48 objects, some at the
    tile edges, a catalog with a magnitude column, the survey index; and two models."""
    root = tmp_path_factory.mktemp("survey")
    rng = np.random.default_rng(5)
    ids, ra, dec, mag = [], [], [], []
    for t in range(4):
        wcs = make_wcs(30.0 + 0.02 * t, -3.0, SHAPE, rot_deg=7 * t)
        xy = np.column_stack([rng.uniform(-2, SHAPE[1] + 1, 12), rng.uniform(-2, SHAPE[0] + 1,
                                                                            12)])
        images = _images(rng, xy)
        if t == 2:
            images[1] = np.nan  # the cutouts step rejects this tile's objects
        write_tile(root, f"T{t}", wcs, SHAPE, compressed=True, images=images)
        r, d = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        ra += list(r)
        dec += list(d)
        ids += [2**60 + 100 * t + k for k in range(12)]
        mag += list(rng.uniform(18, 24, 12))
    Table({"objid": np.array(ids, np.int64), "ra": ra, "dec": dec, "mag": mag}).write(
        root / "cat.fits")
    config = make_config(root, compressed=True, cutouts={"stamp_size_pix": SIZE, "n_blank": 2},
                         index={"tiles_per_shard": 4},
                         infer={"batch_size": 5, "select": [{"column": "mag",
                                                             "range": [None, 23.0]}]},
                         train={"threads": 1}, preprocess={"chunk_objects": 7})
    write_index(root / "index", build_index(config), config)
    models = []
    for seed, (task, arch) in enumerate((("lens", "baseline3"), ("merger", "d4"))):
        torch.manual_seed(seed)
        model = build_model(arch, len(BANDS), SIZE)
        meta = {"architecture": arch, "task": task, "model": "cnn", "bands": BANDS,
                "pixscale_arcsec": 0.5, "stamp_size_pix": SIZE,
                "normalisation": dict(config["preprocess"]), "in_channels": len(BANDS),
                "provenance": {"seed": seed}}
        path = root / f"{task}.pt"
        save_checkpoint(path, {"model_state": model.state_dict(), "optimizer_state": {},
                               "scheduler_state": {}, "scaler_state": {}, "rng_state": {},
                               "epoch": 1, "config": load(), "meta": meta})
        models.append(path)
    return root, config, models


@pytest.fixture(scope="module")
def stamps_path_scores(survey, tmp_path_factory):
    """Today's path: cutouts -> preprocess -> infer on the stamps file."""
    root, config, models = survey
    out = tmp_path_factory.mktemp("stamps_path")
    rows = read_assignment_rows(root / "index", shard="s0000")
    cut_objects(config, rows, out / "cutouts.h5", out / "rejects.ecsv", "s0000")
    preprocess_file(out / "cutouts.h5", out / "stamps.h5", config["preprocess"], config)
    infer.infer_tile(_config(config, embeddings=True), out / "stamps.h5", models,
                     out / "scores.fits", out / "emb.h5")
    return Table.read(out / "scores.fits"), out / "emb.h5"


def _config(config, **infer_changes):
    return {**config, "infer": {**config["infer"], **infer_changes}}


def _ranks(scores):
    z = np.where(np.isfinite(scores), scores, -np.inf)
    return np.argsort(-z, kind="stable")


def test_tiles_give_the_stamps_path_table(survey, stamps_path_scores, tmp_path):
    root, config, models = survey
    expected, _ = stamps_path_scores
    summary = stream.score_shard(_config(config, tiles_in_flight=2), root / "index", "s0000",
                                 models, tmp_path / "scores.fits")
    got = Table.read(tmp_path / "scores.fits")
    assert got.colnames == expected.colnames
    rows = read_assignment_rows(root / "index", shard="s0000")
    on_t2 = int((rows["tile"] == "T2").sum())
    assert summary["n_tiles"] == 4 and summary["n_rejected"] == on_t2 > 0
    assert len(got) == len(rows["tile"]) - on_t2 and "T2" not in got["tile"].astype(str)
    assert (got["flags"] != 0).any()  # edge objects are flagged
    assert (~got["selected"]).any() and got["selected"].any()  # infer.select applied
    for name in ("index", "id", "ra", "dec", "tile", "flags", "selected"):
        assert np.array_equal(got[name], expected[name]), name
    assert got["id"].dtype.kind == "i" and got["id"][0] >= 2**60
    for column in ("score_lens_cnn", "score_merger_cnn"):
        a, b = np.asarray(expected[column]), np.asarray(got[column])
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) <= 1e-5
        assert np.array_equal(_ranks(a), _ranks(b))
        assert np.nanstd(b) > 1e-3  # the objects differ: ranks are not trivially equal


def test_embeddings_are_the_layer_before_the_logit(survey, stamps_path_scores, tmp_path):
    root, config, models = survey
    _, stamps_emb = stamps_path_scores
    cfg = _config(config, tiles_in_flight=0, embeddings=True, select=[])
    stream.score_shard(cfg, root / "index", "s0000", models, tmp_path / "scores.fits",
                       tmp_path / "emb.h5")
    table = Table.read(tmp_path / "scores.fits")
    _, model = infer.load_models(models[:1], torch.device("cpu"))[0].popitem()
    head = model.head[-1]
    with h5py.File(tmp_path / "emb.h5") as fh, h5py.File(stamps_emb) as old:
        assert np.array_equal(fh["index"][()], table["index"])
        emb = fh["score_lens_cnn"][()]
        assert emb.shape == (len(table), 64) and np.isfinite(emb).all()
        logit = emb @ head.weight.detach().numpy()[0] + head.bias.item()
        np.testing.assert_allclose(logit, table["score_lens_cnn"], atol=1e-4)
        merger = fh["score_merger_cnn"][()]
        assert merger.shape[0] == len(table) and merger.shape[1] > 0
        # the stamps path (infer.select on) has NaN rows for unselected objects
        selected = np.isfinite(old["score_lens_cnn"][()]).all(axis=1)
        assert 0 < selected.sum() < len(table)
        np.testing.assert_allclose(old["score_lens_cnn"][()][selected], emb[selected],
                                   atol=1e-5)


class _FakePool:
    """A synchronous stand-in for ProcessPoolExecutor that records what is in flight."""

    log: list = []

    def __init__(self, workers, mp_context=None):
        self.pending = 0

    def submit(self, fn, *args):
        self.pending += 1
        _FakePool.log.append(("submit", self.pending))
        future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_no_more_than_tiles_in_flight_are_decoded_ahead(survey, monkeypatch):
    root, config, _ = survey
    monkeypatch.setattr(stream, "ProcessPoolExecutor", _FakePool)
    _FakePool.log = []
    rows = read_assignment_rows(root / "index", shard="s0000")
    held = []
    for _, tile in stream.decoded_tiles(config, rows, 2):
        pool_pending = _FakePool.log[-1][1]
        held.append((tile.tile, pool_pending - len(held) - 1))
    # while the caller holds tile i, at most 2 tiles were submitted after it
    assert [t for t, _ in held] == ["T0", "T1", "T2", "T3"]
    assert max(ahead for _, ahead in held) == 2
    assert [ahead for _, ahead in held] == [2, 2, 1, 0]


def test_cli_scores_a_shard_and_refuses_a_model_of_another_stamp_size(survey, tmp_path):
    root, config, models = survey
    cfg = json.dumps(_config(config, tiles_in_flight=0))
    argv = ["--config-json", cfg, "--shard", "s0000", "--index-dir", str(root / "index"),
            "--models", *map(str, models), "--out", str(tmp_path / "s.fits")]
    assert infer.main(argv) == 0 and len(Table.read(tmp_path / "s.fits")) > 0
    other = json.loads(cfg)
    other["cutouts"]["stamp_size_pix"] = SIZE + 2
    argv[1] = json.dumps(other)
    assert infer.main(argv) != 0


def test_infer_job_memory_grows_with_tiles_in_flight_and_the_largest_tile(tmp_path):
    from skysift import plan
    from skysift.config import validate
    tiles_json = tmp_path / "tiles.json"
    tiles_json.write_text(json.dumps({"tiles": [
        {"tile": "a", "shape": [1000, 1000], "n_objects": 400},
        {"tile": "b", "shape": [4000, 4000], "n_objects": 100},
        {"tile": "c", "shape": [1000, 1000], "n_objects": 7000}]}))
    cfg = validate({"survey": {"bands": ["g", "r", "i"]}, "cutouts": {"stamp_size_pix": 64},
                    "infer": {"tiles_in_flight": 2}})
    stamps_mb = 7000 * 3 * 64 * 64 * 4 / 1e6  # the most crowded tile's stamps
    tile_mb = 16e6 * 3 * 5 / 1e6  # the largest tile: float32 bands + a mask byte
    two = plan.infer_mem_mb(cfg, tiles_json, ["a", "b", "c"])
    assert two == int(plan.INFER_BASE_MB + 4 * stamps_mb
                      + 2 * (plan.DECODE_BASE_MB + tile_mb + 2 * stamps_mb)) + 1
    cfg["infer"]["tiles_in_flight"] = 4
    four = plan.infer_mem_mb(cfg, tiles_json, ["a", "b", "c"])
    assert four - two == int(2 * (stamps_mb + plan.DECODE_BASE_MB + tile_mb + 2 * stamps_mb))
    one = (400 * 3 * 64 * 64 * 4 / 1e6, 1e6 * 3 * 5 / 1e6)  # stamps, tile of "a" alone
    assert plan.infer_mem_mb(cfg, tiles_json, ["a"]) == int(
        plan.INFER_BASE_MB + 6 * one[0] + 4 * (plan.DECODE_BASE_MB + one[1] + 2 * one[0])) + 1


def test_tile_path_lists_the_rejects_of_the_cutouts_step(survey, tmp_path):
    """Rule rejects merges infer's per-shard rejects: the same objects and reasons as the
    cutouts step's (a tile with a band without a valid pixel), nothing dropped; edge
    objects are scored with flags, not rejected."""
    root, config, models = survey
    rows = read_assignment_rows(root / "index", shard="s0000")
    cut_objects(config, rows, tmp_path / "cutouts.h5", tmp_path / "cut.rejects.ecsv", "s0000")
    stream.score_shard(_config(config, tiles_in_flight=0), root / "index", "s0000", models,
                       tmp_path / "scores.fits", rejects_out=tmp_path / "infer.rejects.ecsv")
    cut, got = (Table.read(tmp_path / f"{name}.rejects.ecsv") for name in ("cut", "infer"))
    assert len(got) == int((rows["tile"] == "T2").sum()) > 0
    for name in ("index", "id", "reason"):
        assert got[name].tolist() == cut[name].tolist(), name
    scored = Table.read(tmp_path / "scores.fits")
    assert len(scored) + len(got) == len(rows["index"])  # every object scored or rejected
    assert (scored["flags"] != 0).any()
    from skysift.survey import rejects as merge
    Table({"index": np.zeros(0, np.int64), "id": np.zeros(0, np.int64),
           "reason": np.zeros(0, str)}).write(tmp_path / "index.ecsv", format="ascii.ecsv")
    merged = merge.merge_rejects(tmp_path / "index.ecsv", [tmp_path / "infer.rejects.ecsv"])
    assert merged["index"].tolist() == sorted(cut["index"].tolist())
    assert set(merged["stage"]) == {"cutouts"}
