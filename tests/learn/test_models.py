"""Architectures: one logit per stamp for any stamp size; runtime choices fail loudly."""

from __future__ import annotations

import pytest
import torch

from skysift.errors import ConfigError
from skysift.learn.models import (
    ARCHITECTURES,
    MIN_STAMP_SIZE_PIX,
    Committee,
    build_model,
    count_parameters,
)
from skysift.learn.models.resnets import PreActBottleneck
from skysift.learn.runtime import resolve_device, resolve_precision, torch_runtime
from skysift.learn.symmetry import d4_apply


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
    with pytest.raises(ConfigError, match="valid: baseline3, d4, deeplens, resnet18"):
        build_model("resnet9000", 3, 48)
    assert set(ARCHITECTURES) == {"baseline3", "deeplens", "resnet18", "d4"}


@pytest.mark.parametrize("arch", ["deeplens", "resnet18", "d4"])
@pytest.mark.parametrize("size, bands", [(16, 1), (33, 4)])
def test_every_architecture_gives_one_finite_logit_per_stamp(arch, size, bands):
    torch.manual_seed(0)
    model = build_model(arch, bands, size)
    out = model(torch.randn(3, bands, size, size))  # train mode: BN with batch statistics
    assert out.shape == (3,) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_deeplens_is_the_lanusse_layout():
    """7x7x32 stem, 5 stages x 3 pre-activation bottleneck units (32 -> 512), ELU."""
    model = build_model("deeplens", 3, 45)
    stem = model.features[0]
    assert stem.kernel_size == (7, 7) and stem.out_channels == 32
    units = [m for m in model.features if isinstance(m, PreActBottleneck)]
    assert len(units) == 15
    assert [u.body[-1].out_channels for u in units[::3]] == [32, 64, 128, 256, 512]
    assert all(isinstance(m, torch.nn.ELU) for m in model.modules()
               if isinstance(m, (torch.nn.ELU, torch.nn.ReLU)))
    assert model.head.out_features == 1


def test_resnet18_has_the_small_input_stem():
    model = build_model("resnet18", 3, 32)
    stem = model.features[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert 11.0e6 < count_parameters(model) < 11.3e6  # ResNet-18 with one logit


@pytest.mark.parametrize("size", [20, 21])
def test_d4_model_is_invariant_to_every_rotation_and_flip(size):
    torch.manual_seed(2)
    model = build_model("d4", 3, size)
    x = torch.randn(4, 3, size, size)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        ref = model(x)
        for k in range(1, 8):
            torch.testing.assert_close(model(d4_apply(x, k)), ref, rtol=1e-4, atol=1e-5)
    # not invariant to what is not a symmetry of the sky: a one-pixel shift changes it
    assert not torch.allclose(model(torch.roll(x, 1, dims=-1)), ref, atol=1e-5)


def test_a_plain_cnn_is_not_invariant():
    torch.manual_seed(2)
    model = build_model("deeplens", 3, 20).eval()
    x = torch.randn(4, 3, 20, 20)
    assert not torch.allclose(model(d4_apply(x, 1)), model(x), atol=1e-4)


def test_committee_averages_member_logits():
    torch.manual_seed(0)
    model = build_model("baseline3", 3, 16, members=3).eval()
    assert isinstance(model, Committee) and len(model.members) == 3
    x = torch.randn(5, 3, 16, 16)
    expected = torch.stack([m(x) for m in model.members]).mean(0)
    torch.testing.assert_close(model(x), expected)
    with pytest.raises(ConfigError, match="members"):
        build_model("baseline3", 3, 16, members=0)


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


def test_classical_is_not_built_but_named_among_the_valid_architectures():
    from skysift.learn.models import CLASSICAL
    with pytest.raises(ConfigError, match="fitted by skysift.learn.train"):
        build_model(CLASSICAL, 3, 48)
    with pytest.raises(ConfigError, match="classical"):
        build_model("vgg", 3, 48)
