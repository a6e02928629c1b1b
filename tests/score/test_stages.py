"""Two scoring stages (infer.first_stage): the global top fraction by the first stage, the
full recipe on it and on the test split, with the scores one stage gives."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from astropy.table import Table
from test_stream import BANDS, SIZE, _config, survey  # noqa: F401  (the module's fixture)

from skysift import plan
from skysift.config import load
from skysift.errors import ConfigError
from skysift.learn.checkpoints import save_checkpoint
from skysift.learn.models import build_model
from skysift.score import stages, stream
from skysift.survey.hashsplit import assign_split


def _scores_file(path, index, z):
    Table({"index": np.asarray(index, np.int64),
           "score1_lens": np.asarray(z, np.float32)}).write(path)
    return path


def _global_top(index, z, n_top):
    ok = np.isfinite(z)
    order = np.lexsort((index[ok], -z[ok]))
    return set(index[ok][order][:n_top].tolist())


def test_the_top_fraction_is_global_with_ties_by_index(tmp_path):
    """Shards of unequal quality: a per-shard top would take as many from the poor shard as
    from the rich one; the global top follows the logits over every shard, ties by index."""
    rng = np.random.default_rng(3)
    index = rng.permutation(3000)
    z = np.concatenate([rng.normal(2, 1, 1000), rng.normal(-2, 1, 1000),
                        rng.normal(0, 1, 1000)]).astype(np.float32)
    z = np.round(z, 1)  # many exact ties
    z[rng.choice(3000, 40, replace=False)] = np.nan  # unscored objects never count
    paths = [_scores_file(tmp_path / f"s{i}.fits", index[i * 1000:(i + 1) * 1000],
                          z[i * 1000:(i + 1) * 1000]) for i in range(3)]
    tops = stages.top_fraction(paths, ["score1_lens"], 0.05)
    entry = tops["score1_lens"]
    assert entry["n_finite"] == 2960 and entry["n_top"] == math.ceil(0.05 * 2960) == 148
    got = set()
    for i in range(3):
        sl = slice(i * 1000, (i + 1) * 1000)
        got |= set(index[sl][stages.in_top(z[sl], index[sl], entry)].tolist())
    assert got == _global_top(index, z, 148)
    assert len(got & set(index[1000:2000].tolist())) < 5  # the poor shard gives almost none


@pytest.fixture(scope="module")
def committee(survey):  # noqa: F811
    """A two-member committee for lens (its first member also saved alone)."""
    root, config, models = survey
    torch.manual_seed(11)
    model = build_model("baseline3", len(BANDS), SIZE, members=2)
    first = {k.split(".", 2)[2]: v for k, v in model.state_dict().items()
             if k.startswith("members.0.")}
    out = []
    for name, state, members in (("committee", model.state_dict(), 2),
                                 ("member", first, 1)):
        meta = {"architecture": "baseline3", "task": "lens", "model": name, "bands": BANDS,
                "pixscale_arcsec": 0.5, "stamp_size_pix": SIZE, "members": members,
                "normalisation": dict(config["preprocess"]), "in_channels": len(BANDS),
                "provenance": {"seed": 11}}
        path = root / f"lens_{name}.pt"
        save_checkpoint(path, {"model_state": state, "optimizer_state": {},
                               "scheduler_state": {}, "scaler_state": {}, "rng_state": {},
                               "epoch": 1, "config": load(), "meta": meta})
        out.append(path)
    return out


def test_rescored_objects_get_the_one_stage_scores(survey, committee, tmp_path):  # noqa: F811
    root, config, models = survey
    lens_committee, lens_member = committee
    full = [lens_committee, models[1]]  # the committee for lens, the d4 CNN for merger
    cfg = _config(config, tiles_in_flight=0, tta=True, first_stage="auto",
                  rescore_fraction=0.1)
    cfg["split"] = {**cfg["split"], "fractions": {"train": 0.4, "val": 0.2, "test": 0.4}}
    stream.score_shard(cfg, root / "index", "s0000", full, tmp_path / "stage1.fits",
                       stage1=True)
    record = stages.write_plan(cfg, [tmp_path / "stage1.fits"], tmp_path / "rescore.json")
    summary = stages.rescore_shard(cfg, root / "index", "s0000", full,
                                   tmp_path / "stage1.fits", tmp_path / "rescore.json",
                                   tmp_path / "scores.fits")
    stream.score_shard(cfg, root / "index", "s0000", full, tmp_path / "one.fits")
    stream.score_shard(_config(cfg, tta=False), root / "index", "s0000", [lens_member],
                       tmp_path / "member.fits")
    got, one = Table.read(tmp_path / "scores.fits"), Table.read(tmp_path / "one.fits")
    member = Table.read(tmp_path / "member.fits")
    for name in ("index", "id", "ra", "dec", "tile", "flags", "selected"):
        assert np.array_equal(got[name], one[name]), name
    rescored, selected = np.asarray(got["rescored"]), np.asarray(got["selected"])
    assert 0 < rescored.sum() < selected.sum() == summary["n_rescored"] + (~rescored
                                                                          & selected).sum()
    for column in ("score_lens_committee", "score_merger_cnn", "score_std_lens_committee"):
        a, b = np.asarray(one[column])[rescored], np.asarray(got[column])[rescored]
        assert np.isfinite(b).all() and np.abs(a - b).max() <= 1e-5, column
        assert np.isnan(np.asarray(got[column])[~rescored]).all()
    # the first stage: the committee's first member, one orientation, every selected object
    np.testing.assert_allclose(got["score1_lens"], member["score_lens_member"], atol=1e-5)
    assert np.isfinite(np.asarray(got["score1_merger"])[selected]).all()
    # the fraction: the survey's (here one shard's) top tenth of each task, and the test
    test = assign_split(np.asarray(got["id"]), cfg["split"]["fractions"],
                        cfg["split"]["salt"]) == 2
    top = np.zeros(len(got), bool)
    for task in ("lens", "merger"):
        z, entry = np.asarray(got[f"score1_{task}"]), record["tops"][f"score1_{task}"]
        mine = stages.in_top(z, np.asarray(got["index"]), entry)
        assert mine.sum() == entry["n_top"] == math.ceil(0.1 * selected.sum())
        assert z[mine].min() >= z[selected & ~mine].max()
        top |= mine
    assert (test & selected).any() and (test & selected & ~top).any()
    np.testing.assert_array_equal(rescored, (top | test) & selected)


def test_cli_plans_and_rescores(survey, tmp_path):  # noqa: F811
    root, config, models = survey
    cfg = _config(config, tiles_in_flight=0, first_stage="auto", rescore_fraction=0.1)
    stream.score_shard(cfg, root / "index", "s0000", models, tmp_path / "s1.fits", stage1=True)
    text = json.dumps(cfg)
    assert stages.main(["--config-json", text, "--plan", "--scores", str(tmp_path / "s1.fits"),
                        "--out", str(tmp_path / "plan.json")]) == 0
    argv = ["--config-json", text, "--shard", "s0000", "--index-dir", str(root / "index"),
            "--scores", str(tmp_path / "s1.fits"), "--rescore-plan", str(tmp_path / "plan.json"),
            "--models", *map(str, models), "--out", str(tmp_path / "s.fits")]
    assert stages.main(argv) == 0
    assert "rescored" in Table.read(tmp_path / "s.fits").colnames
    (tmp_path / "plan.json").write_text("{")
    assert stages.main(argv) == 2


def test_plan_of_two_stages():
    config = load()
    assert not plan.two_stage(config) and plan.infer_scores(config) == "results/scores/{shard}.fits"
    config["infer"]["first_stage"] = "auto"
    primaries = ["results/models/lens/baseline3.pt", "results/models/merger/baseline3.pt"]
    assert plan.infer_models(config) == primaries == plan.first_stage_models(config)
    assert plan.infer_scores(config) == "results/stage1/{shard}.fits"
    assert plan.infer_stage_arg(config) == "--first-stage"
    config["models"] = [{"name": "big", "architecture": "resnet18", "members": 4},
                        {"name": "small", "architecture": "baseline3", "tasks": ["lens"]}]
    config["infer"]["first_stage"] = "small"
    with pytest.raises(ConfigError, match="'small', which does not serve task 'merger'"):
        plan.first_stage_models(config)
    config["models"][1]["tasks"] = None
    assert plan.first_stage_models(config) == ["results/models/lens/small.pt",
                                               "results/models/merger/small.pt"]


def test_gather_ranks_candidates_by_the_full_recipe_and_keeps_both_scores(survey, tmp_path):  # noqa: F811
    from skysift.score.gather import gather

    root, config, models = survey
    cfg = _config(config, tiles_in_flight=0, first_stage="auto", rescore_fraction=0.2,
                  top_k=20)
    cfg["models"] = [{"name": "cnn", "architecture": "baseline3"}]
    stream.score_shard(cfg, root / "index", "s0000", models, tmp_path / "s1.fits", stage1=True)
    stages.write_plan(cfg, [tmp_path / "s1.fits"], tmp_path / "plan.json")
    stages.rescore_shard(cfg, root / "index", "s0000", models, tmp_path / "s1.fits",
                         tmp_path / "plan.json", tmp_path / "s.fits")
    gather(cfg, [tmp_path / "s.fits"], tmp_path / "cat.fits", tmp_path / "cat.csv",
           tmp_path / "cand")
    cat = Table.read(tmp_path / "cat.fits")
    rescored = np.asarray(cat["rescored"])
    for task in ("lens", "merger"):
        rank, rank1 = np.asarray(cat[f"rank_{task}_cnn"]), np.asarray(cat[f"rank1_{task}"])
        assert ((rank > 0) == rescored).all()  # the full recipe ranks where it ran
        assert sorted(rank1[rank1 > 0]) == list(range(1, np.isfinite(cat[f"score1_{task}"]).sum()
                                                      + 1))
        cand = Table.read(tmp_path / "cand" / f"{task}.csv")
        assert len(cand) == min(20, rescored.sum())
        assert np.asarray(cand["rescored"]).all()
        assert np.all(np.diff(np.asarray(cand[f"score_{task}_cnn"])) <= 0)
