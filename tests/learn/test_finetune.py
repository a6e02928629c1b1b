"""Pretrain, then fine-tune: a network starts from another model's or a file's weights; what
does not fit is re-initialised and reported."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import CONFIG, argv, write_augmented, write_trainset

from skysift.errors import ConfigError, DataError
from skysift.learn import train
from skysift.learn.finetune import init_from, load_matching, read_weights
from skysift.learn.models import build_model
from skysift.modelspec import find_spec

SIZE = 16


def test_matching_tensors_load_and_a_mismatched_input_layer_is_reported():
    source = build_model("baseline3", 3, SIZE)
    target = build_model("baseline3", 4, SIZE)  # another number of bands
    report = load_matching(target, source.state_dict())
    first = next(iter(source.state_dict()))  # the first convolution sees the bands
    assert first in report["reinitialised"]
    assert report["loaded"] == len(source.state_dict()) - len(report["reinitialised"])
    for name, value in source.state_dict().items():
        if name not in report["reinitialised"]:
            assert torch.equal(target.state_dict()[name], value)


def test_read_weights_takes_checkpoints_committees_and_state_dicts(tmp_path):
    net = build_model("baseline3", 3, SIZE)
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    torch.save({"model_state": {f"members.{k}.{n}": v for k in (0, 1)
                                for n, v in net.state_dict().items()}}, tmp_path / "c.pt")
    for name in ("plain.pt", "c.pt"):
        state = read_weights(tmp_path / name)
        assert state.keys() == net.state_dict().keys()
    torch.save({"model_state": {"booster": torch.zeros(3, dtype=torch.uint8)}}, tmp_path / "t.pt")
    with pytest.raises(DataError, match="no tensor matches"):
        init_from(build_model("baseline3", 3, SIZE), tmp_path / "t.pt")
    with pytest.raises(DataError, match="not found"):
        read_weights(tmp_path / "missing.pt")


def test_fine_tune_from_a_local_weights_file_with_another_head(tmp_path):
    write_augmented(tmp_path / "lens.augmented.h5", *write_trainset(tmp_path / "lens.h5"))
    state = build_model("baseline3", 3, SIZE).state_dict()
    head = [k for k in state if k.startswith("head.")][-2]  # the last layer's weight
    state[head] = torch.zeros((2,) + tuple(state[head].shape[1:]))  # a two-class head
    torch.save(state, tmp_path / "pretrained.pt")
    cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": 1},
           "models": [{"name": "cnn", "architecture": "baseline3",
                       "init": str(tmp_path / "pretrained.pt")}]}
    assert train.main(argv(tmp_path, "cnn", cfg)) == 0
    metrics = json.loads((tmp_path / "cnn.metrics.json").read_text())
    assert metrics["init"]["source"] == str(tmp_path / "pretrained.pt")
    assert head in metrics["init"]["reinitialised"]
    assert metrics["init"]["loaded"] == len(state) - len(metrics["init"]["reinitialised"])
    assert metrics["test"]["all"]["n_pos"] + metrics["test"]["all"]["n_neg"] == 10


def test_init_names_another_model_of_the_run():
    cfg = {**CONFIG, "tasks": [{"name": "lens", "label": "is_lens"}],
           "models": [{"name": "sims", "architecture": "baseline3"},
                      {"name": "fine", "architecture": "baseline3", "init": "sims",
                       "train_on": "labelled"}]}
    from skysift import config as skyconfig
    from skysift import plan
    cfg = skyconfig.load(json_text=json.dumps(cfg))
    assert find_spec(cfg, "lens", "fine").init == "results/models/lens/sims.pt"
    assert plan.model_inputs(cfg, "lens", "fine")["init"] == "results/models/lens/sims.pt"
    cfg["models"][1]["init"] = "fine"
    with pytest.raises(ConfigError, match="names the model itself"):
        find_spec(cfg, "lens", "fine")
