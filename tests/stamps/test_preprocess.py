"""Tests of skysift.stamps.preprocess: the normalisation core and the dask file step."""

import json

import h5py
import numpy as np
import pytest

from skysift import config as skyconfig
from skysift import io
from skysift.stamps.normalise import border_width, normalise
from skysift.stamps.preprocess import main, preprocess_file

SIZE = 32
BANDS = ["g", "r"]


@pytest.fixture
def config():
    return skyconfig.load(None, json.dumps({"preprocess": {"chunk_objects": 16}}))


def _stamps(n, rng, background=100.0, sigma=5.0):
    """Constant background + Gaussian noise + a bright central source; a few NaNs."""
    images = rng.normal(background, sigma, (n, len(BANDS), SIZE, SIZE)).astype(np.float32)
    images[:, :, SIZE // 2 - 2:SIZE // 2 + 3, SIZE // 2 - 2:SIZE // 2 + 3] += 500.0
    images[0, 0, :3, :] = np.nan  # an edge stamp
    images[1, 1, 10, 12] = np.nan  # a masked pixel
    return images


def _border(a):
    w = border_width(a.shape[-1])
    frame = np.ones(a.shape[-2:], bool)
    frame[w:-w, w:-w] = False
    return a[..., frame]


def test_border_width():
    assert [border_width(s) for s in (8, 16, 24, 32, 48, 101)] == [2, 2, 3, 4, 4, 4]


def test_normalise_known_image(config):
    cfg = dict(config["preprocess"], stretch="linear")
    images = _stamps(6, np.random.default_rng(1))
    out, mask = normalise(images, cfg)
    assert out.dtype == np.float32 and mask.dtype == np.uint8 and out.shape == images.shape
    border = _border(np.where(mask == 1, out, np.nan))
    assert np.abs(np.nanmedian(border, axis=-1)).max() < 0.2  # background removed
    mad = 1.4826 * np.nanmedian(np.abs(border - np.nanmedian(border, -1, keepdims=True)), -1)
    assert np.allclose(mad, 1.0, atol=1e-5)  # noise units, by construction of the scale
    interior = (images[2:, :, 8:12, 8:12] - 100.0) / 5.0  # truth: background 100, sigma 5
    assert np.abs(np.median(out[2:, :, 8:12, 8:12] - interior)) < 0.2
    assert out[0, 0, SIZE // 2, SIZE // 2] > 50  # the source stands out at ~100 sigma
    assert mask[0, 0, :3].sum() == 0 and mask[0, 0, 3:].all() and mask[1, 1, 10, 12] == 0
    assert np.all(out[0, 0, :3] == 0) and out[1, 1, 10, 12] == 0
    assert mask.sum() == np.isfinite(images).sum()
    assert np.isfinite(out).all()


def test_normalise_matches_reference_formula(config):
    cfg = config["preprocess"]
    images = _stamps(4, np.random.default_rng(2))
    out, _ = normalise(images, cfg)
    for i in range(4):
        for b in range(len(BANDS)):
            border = _border(images[i, b])
            med = np.nanmedian(border)
            sigma = 1.4826 * np.nanmedian(np.abs(border - med))
            ref = np.arcsinh((images[i, b] - med) / sigma / cfg["arcsinh_softening"])
            ref = np.where(np.isfinite(images[i, b]), ref, 0)
            np.testing.assert_allclose(out[i, b], ref, rtol=1e-5, atol=1e-6)


def test_normalise_fallbacks_without_warnings(config):
    images = np.full((2, 1, 16, 16), 7.0, dtype=np.float32)  # MAD 0: scale falls back to 1
    images[0, 0, 8, 8] = 10.0
    images[1] = np.nan  # nothing finite at all
    out, mask = normalise(images, dict(config["preprocess"], stretch="linear"))
    assert out[0, 0, 8, 8] == 3.0 and out[0, 0, 0, 0] == 0.0
    assert not out[1].any() and not mask[1].any()


def test_normalise_identity_options(config):
    cfg = dict(config["preprocess"], background="none", scale="none", stretch="linear")
    images = _stamps(2, np.random.default_rng(3))
    out, mask = normalise(images, cfg)
    assert np.array_equal(out, np.where(np.isfinite(images), images, 0))


def _write_cutouts(path, images, ids):
    n = len(images)
    arrays = {"images": images, "flags": (np.arange(n) % 3).astype(np.uint8),
              "index": np.arange(n, dtype=np.int64) * 7, "id": ids,
              "ra": np.linspace(10, 11, n), "dec": np.linspace(-5, -4, n),
              "pos_xy": np.zeros((n, 2))}
    attrs = {"bands": BANDS, "tile": "t0", "stamp_size_pix": SIZE, "pixscale_arcsec": 0.263,
             **io.provenance({"seed": 1}, step="cutouts")}
    io.write_stamps(path, arrays, attrs, chunk_objects=16)
    return arrays


@pytest.mark.parametrize("kind", ["int", "str"])
def test_preprocess_file_equals_normalise(tmp_path, config, kind):
    n = 45  # three chunks of 16, the last one short
    images = _stamps(n, np.random.default_rng(4))
    ids = (np.int64(2) ** 53 + np.arange(n, dtype=np.int64) if kind == "int"
           else io.id_array([f"obj-é{i}" for i in range(n)]))
    arrays = _write_cutouts(tmp_path / "in.h5", images, ids)
    summary = preprocess_file(tmp_path / "in.h5", tmp_path / "out.h5", config["preprocess"],
                              config, threads=2)
    assert summary["n_objects"] == n
    got, attrs = io.read_arrays(tmp_path / "out.h5", ("images", "mask", "flags", "index", "id",
                                                      "ra", "dec", "pos_xy"))
    out, mask = normalise(images, config["preprocess"])
    assert np.array_equal(got["images"], out)  # bit-identical, chunking does not matter
    assert np.array_equal(got["mask"], mask)
    assert got["id"].dtype == ids.dtype and np.array_equal(got["id"], ids)
    for name in ("flags", "index", "ra", "dec", "pos_xy"):
        assert np.array_equal(got[name], arrays[name])
    assert attrs["normalisation"] == config["preprocess"]
    assert attrs["step"] == "preprocess" and attrs["tile"] == "t0" and attrs["bands"] == BANDS
    with h5py.File(tmp_path / "out.h5") as fh:
        assert fh["images"].chunks == (16, len(BANDS), SIZE, SIZE)
    assert not list(tmp_path.glob("*.partial"))


def test_preprocess_file_zero_objects(tmp_path, config):
    _write_cutouts(tmp_path / "in.h5", np.zeros((0, 2, SIZE, SIZE), np.float32),
                   np.zeros(0, np.int64))
    summary = preprocess_file(tmp_path / "in.h5", tmp_path / "out.h5", config["preprocess"],
                              config, threads=2)
    got, _ = io.read_arrays(tmp_path / "out.h5", ("images", "mask", "id"))
    assert summary["n_objects"] == 0
    assert got["images"].shape == (0, 2, SIZE, SIZE) and got["mask"].dtype == np.uint8


def test_cli(tmp_path):
    images = _stamps(5, np.random.default_rng(5))
    _write_cutouts(tmp_path / "in.h5", images, np.arange(5, dtype=np.int64))
    argv = ["--config-json", "{}", "--in", str(tmp_path / "in.h5"),
            "--out", str(tmp_path / "stamps" / "t0.h5"), "--threads", "2"]
    assert main(argv) == 0
    got, _ = io.read_arrays(tmp_path / "stamps" / "t0.h5", ("images",))
    assert np.isfinite(got["images"]).all()
    argv[3] = str(tmp_path / "missing.h5")
    assert main(argv) == 2


@pytest.mark.parametrize("scheduler", ["processes", "distributed"])
def test_other_schedulers_write_the_same_file(tmp_path, scheduler):
    """threads (default), processes and a local distributed cluster give identical stamps."""
    rng = np.random.default_rng(3)
    images = rng.normal(10.0, 2.0, size=(70, 3, 16, 16)).astype(np.float32)
    images[5, 1, :4] = np.nan
    src = tmp_path / "cut.h5"
    io.write_stamps(src, {"images": images, "index": np.arange(70)}, {"tile": "t"})
    results = {}
    for name in ("threads", scheduler):
        conf = skyconfig.load(overrides=[f"preprocess.scheduler={name}",
                                      "preprocess.chunk_objects=16"])
        out = tmp_path / f"{name}.h5"
        preprocess_file(src, out, conf["preprocess"], conf, threads=2)
        with h5py.File(out) as fh:
            results[name] = (fh["images"][()], fh["mask"][()])
    np.testing.assert_array_equal(results["threads"][0], results[scheduler][0])
    np.testing.assert_array_equal(results["threads"][1], results[scheduler][1])
