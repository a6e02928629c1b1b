"""Architectures: one logit per stamp for any stamp size; runtime choices fail loudly."""

from __future__ import annotations

import pytest
import torch

from skysift.errors import ConfigError
from skysift.models import (
    ARCHITECTURES,
    MIN_STAMP_SIZE_PIX,
    build_model,
    resolve_device,
    resolve_precision,
    torch_runtime,
)


@pytest.mark.parametrize("size", [16, 17, 48, 65])
@pytest.mark.parametrize("bands", [1, 3])
def test_baseline3_gives_one_logit_per_stamp(size, bands):
    torch.manual_seed(0)
    model = build_model("baseline3", bands, size).eval()
    logits = model(torch.randn(5, bands, size, size))
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", [16, 17])
def test_convolutions_keep_the_stamp_size(size):
    """Keras 'same' padding, also for the even 6x6 and 2x2 kernels."""
    model = build_model("baseline3", 3, size)
    x = torch.randn(2, 3, size, size)
    convs = [m for m in model.features if isinstance(m, torch.nn.Sequential)]
    assert [c[1].kernel_size for c in convs] == [(6, 6), (5, 5), (2, 2)]
    assert [c[1].out_channels for c in convs] == [32, 64, 128]
    assert convs[0](x).shape[-2:] == (size, size)


def test_dropout_is_active_only_in_training():
    torch.manual_seed(1)
    model = build_model("baseline3", 3, 16)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid: baseline3"):
        build_model("resnet9000", 3, 48)
    assert "baseline3" in ARCHITECTURES


def test_too_small_stamp_is_a_config_error():
    with pytest.raises(ConfigError, match="stamp_size_pix"):
        build_model("baseline3", 3, MIN_STAMP_SIZE_PIX - 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_says_so():
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_precision_choices_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", cpu)


def test_torch_runtime_restores_global_state():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch_runtime(1, deterministic=True):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
