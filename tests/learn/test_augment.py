"""Tests of skysift.learn.augment: D4 group, exact shifts, reproducible batches, the CLI."""

import itertools
import json

import numpy as np
import pytest
import torch

from skysift import io
from skysift.learn.augment import main
from skysift.learn.symmetry import D4_ELEMENTS, d4_apply, d4_compose, d4_inverse, d4_random
from skysift.learn.transforms import augment_batch, copy_seed, scale_flux, subpixel_shift, zoom

CFG = {"d4": True, "shift_pix": 1.5, "noise_sigma": 0.02}


@pytest.fixture
def image():
    return torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))


def test_d4_elements_are_distinct_exact_permutations(image):
    results = [d4_apply(image, k) for k in D4_ELEMENTS]
    for out in results:
        assert out.shape == image.shape
        assert torch.equal(out.flatten(-2).sort(-1).values, image.flatten(-2).sort(-1).values)
    for a, b in itertools.combinations(range(8), 2):
        assert not torch.equal(results[a], results[b])
    assert torch.equal(results[0], image)


def test_d4_group_laws(image):
    table = [[d4_compose(a, b) for b in D4_ELEMENTS] for a in D4_ELEMENTS]
    for row in table:  # a Latin square: closure and cancellation
        assert sorted(row) == list(D4_ELEMENTS)
    for a, b in itertools.product(D4_ELEMENTS, repeat=2):
        assert torch.equal(d4_apply(d4_apply(image, b), a), d4_apply(image, table[a][b]))
    for k in D4_ELEMENTS:
        assert d4_compose(k, d4_inverse(k)) == 0 == d4_compose(d4_inverse(k), k)
        assert d4_compose(0, k) == k == d4_compose(k, 0)
        assert torch.equal(d4_apply(d4_apply(image, k), d4_inverse(k)), image)
    assert table != [list(r) for r in zip(*table, strict=True)]  # D4 is not abelian
    with pytest.raises(ValueError):
        d4_apply(image, 8)


def test_d4_random_applies_the_drawn_element_per_sample():
    x = torch.randn(40, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    out, ks = d4_random(x, torch.Generator().manual_seed(2))
    assert len(set(ks.tolist())) > 4
    for i in range(40):
        assert torch.equal(out[i], d4_apply(x[i], int(ks[i])))


def test_integer_shift_is_exact_roll(image):
    shifts = torch.tensor([[2.0, -1.0], [-3.0, 3.0]])
    out = subpixel_shift(image, shifts)
    for i, (dx, dy) in enumerate(shifts.long().tolist()):
        rolled = torch.roll(image[i], (dy, dx), dims=(-2, -1))
        assert torch.equal(out[i, :, 3:-3, 3:-3], rolled[:, 3:-3, 3:-3])
    assert not out[0, :, :, :2].any() and not out[0, :, -1:, :].any()  # zero fill, not wrap


def test_half_pixel_shift_is_bilinear(image):
    out = subpixel_shift(image, torch.tensor([[0.5, 0.0], [0.0, -0.25]]))
    torch.testing.assert_close(out[0, :, :, 1:], 0.5 * (image[0, :, :, 1:] + image[0, :, :, :-1]))
    torch.testing.assert_close(out[1, :, :-1, :], 0.75 * image[1, :, :-1] + 0.25 * image[1, :, 1:])


def test_augment_batch_reproducible_from_seed(image):
    before = image.clone()
    first = augment_batch(image, CFG, torch.Generator().manual_seed(7))
    again = augment_batch(image, CFG, torch.Generator().manual_seed(7))
    other = augment_batch(image, CFG, torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(image, before)
    off = augment_batch(image, {"d4": False, "shift_pix": 0, "noise_sigma": 0},
                        torch.Generator().manual_seed(7))
    assert torch.equal(off, image) and off is not image
    noise = augment_batch(image, {"d4": False, "shift_pix": 0, "noise_sigma": 0.5},
                          torch.Generator().manual_seed(7)) - image
    assert 0.3 < noise.std() < 0.7


def _trainset(path, n=10):
    rng = np.random.default_rng(0)
    arrays = {"images": rng.normal(size=(n, 2, 8, 8)).astype(np.float32),
              "mask": np.ones((n, 2, 8, 8), np.uint8), "flags": np.zeros(n, np.uint8),
              "index": np.arange(n, dtype=np.int64) + 100, "id": np.arange(n, dtype=np.int64),
              "label": (np.arange(n) % 2).astype(np.uint8),
              "split": np.array([0, 1, 0, 0, 2, 0, 0, 1, 0, 0], np.uint8)[:n]}
    attrs = {"task": "lens", "bands": ["g", "r"], "stamp_size_pix": 8,
             **io.provenance({"seed": 0}, step="training_set")}
    io.write_stamps(path, arrays, attrs)
    return arrays


def test_cli_writes_seeded_copies(tmp_path):
    src = _trainset(tmp_path / "lens.h5")
    train = np.flatnonzero(src["split"] == 0)
    argv = ["--config-json", json.dumps({"seed": 3, "augment": {"copies": 2}}),
            "--in", str(tmp_path / "lens.h5"), "--out", str(tmp_path / "aug.h5")]
    assert main(argv) == 0
    names = ("images", "label", "index", "copy")
    got, attrs = io.read_arrays(tmp_path / "aug.h5", names)
    assert got["images"].shape == (2 * train.size, 2, 8, 8)
    assert got["copy"].tolist() == [0] * train.size + [1] * train.size
    assert np.array_equal(got["index"], np.tile(src["index"][train], 2))
    assert np.array_equal(got["label"], np.tile(src["label"][train], 2))
    assert attrs["seeds"] == [copy_seed(3, "lens", 0), copy_seed(3, "lens", 1)]
    assert attrs["augment"]["copies"] == 2 and attrs["task"] == "lens"
    assert not np.array_equal(got["images"][:train.size], got["images"][train.size:])
    assert np.abs(got["images"] - np.tile(src["images"][train], (2, 1, 1, 1))).max() > 0.1
    assert main(argv[:4] + ["--out", str(tmp_path / "again.h5")]) == 0
    again, _ = io.read_arrays(tmp_path / "again.h5", ("images",))
    assert np.array_equal(again["images"], got["images"])  # same seed, same copies


def test_cli_zero_copies(tmp_path):
    _trainset(tmp_path / "lens.h5")
    argv = ["--config-json", json.dumps({"augment": {"copies": 0}}),
            "--in", str(tmp_path / "lens.h5"), "--out", str(tmp_path / "aug.h5")]
    assert main(argv) == 0
    got, attrs = io.read_arrays(tmp_path / "aug.h5", ("images", "label", "index", "copy"))
    assert got["images"].shape == (0, 2, 8, 8) and got["copy"].size == 0
    assert attrs["seeds"] == []


def test_zoom_keeps_the_object_pixel_and_magnifies_about_it():
    size = 16  # even: the object sits in pixel size // 2 = 8
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                          torch.arange(size, dtype=torch.float32), indexing="ij")
    ring = torch.exp(-0.5 * ((torch.hypot(x - 8, y - 8) - 3) / 0.7) ** 2)[None, None]
    out = zoom(ring.repeat(2, 1, 1, 1), torch.tensor([1.0, 2.0]))
    assert torch.equal(out[0], ring[0])  # factor 1: untouched
    # the ring of radius 3 now has radius 6 about the same centre pixel
    profile = out[1, 0, 8, 8:]
    assert int(profile.argmax()) == 6 and out[1, 0, 8, 8] < 0.01
    assert torch.allclose(out[1, 0, 8, 2:8].flip(0), out[1, 0, 8, 9:15], atol=0.05)


def test_flux_scaling_acts_before_the_arcsinh_stretch():
    flux = torch.tensor([[[[0.0, 3.0, -6.0, 30.0]]]])
    stamps = torch.asinh(flux / 3.0)  # preprocess: arcsinh(x / softening)
    out = scale_flux(stamps.repeat(2, 1, 1, 1), torch.tensor([2.0, 0.5]), "arcsinh")
    torch.testing.assert_close(out[0], torch.asinh(2 * flux[0] / 3.0))
    torch.testing.assert_close(out[1], torch.asinh(0.5 * flux[0] / 3.0))
    torch.testing.assert_close(scale_flux(flux, torch.tensor([2.0]), "linear"), 2 * flux)


def test_zoom_and_flux_are_drawn_only_when_enabled(image):
    base = augment_batch(image, CFG, torch.Generator().manual_seed(3))
    off = {**CFG, "zoom": [1.0, 1.0], "flux_scale": [1.0, 1.0]}
    assert torch.equal(augment_batch(image, off, torch.Generator().manual_seed(3)), base)
    on = {**CFG, "zoom": [0.9, 1.1], "flux_scale": [0.5, 2.0]}
    a = augment_batch(image, on, torch.Generator().manual_seed(3), {"stretch": "arcsinh"})
    b = augment_batch(image, on, torch.Generator().manual_seed(3), {"stretch": "arcsinh"})
    assert torch.equal(a, b) and not torch.allclose(a, base)
