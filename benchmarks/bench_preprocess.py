"""Benchmark: skysift.preprocess with dask (2 threads) vs one plain numpy pass.

Both read the same synthetic cutouts file and write a complete stamps file (gzip-1 chunks),
in the same process, alternating; prints the median seconds of each and their ratio.

    python benchmarks/bench_preprocess.py [--objects 4096] [--size 48] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from skysift import config as skyconfig
from skysift import io
from skysift.preprocess import normalise, preprocess_file

NAMES = ("images", "flags", "index", "id", "ra", "dec", "pos_xy")


def make_cutouts(path: Path, n: int, size: int, chunk: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(100.0, 5.0, (n, 3, size, size)).astype(np.float32)
    images[::7, :, :3, :] = np.nan  # some edge stamps
    arrays = {"images": images, "flags": np.zeros(n, np.uint8),
              "index": np.arange(n, dtype=np.int64), "id": np.arange(n, dtype=np.int64) + 2**60,
              "ra": rng.uniform(0, 1, n), "dec": rng.uniform(0, 1, n), "pos_xy": np.zeros((n, 2))}
    io.write_stamps(path, arrays, {"bands": ["g", "r", "i"], **io.provenance({"seed": 0})},
                    chunk_objects=chunk)


def numpy_pass(src: Path, out: Path, cfg: dict, config: dict) -> None:
    arrays, attrs = io.read_arrays(src, NAMES)
    arrays["images"], arrays["mask"] = normalise(arrays["images"], cfg)
    attrs.update(normalisation=cfg, **io.provenance(config))
    io.write_stamps(out, arrays, attrs, chunk_objects=cfg["chunk_objects"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=4096)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    config = skyconfig.load()
    cfg = config["preprocess"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cutouts.h5"
        make_cutouts(src, args.objects, args.size, cfg["chunk_objects"])
        times: dict[str, list[float]] = {"numpy": [], "dask": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            numpy_pass(src, Path(tmp) / "numpy.h5", cfg, config)
            times["numpy"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            preprocess_file(src, Path(tmp) / "dask.h5", cfg, config, threads=args.threads)
            times["dask"].append(time.perf_counter() - t0)
        a, _ = io.read_arrays(Path(tmp) / "numpy.h5", ("images",))
        b, _ = io.read_arrays(Path(tmp) / "dask.h5", ("images",))
        assert np.array_equal(a["images"], b["images"]), "dask and numpy outputs differ"
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"objects={args.objects} size={args.size} bands=3 repeats={args.repeats}")
    print(f"numpy single pass: median {med['numpy']:.3f} s "
          f"({args.objects / med['numpy']:.0f} objects/s)")
    print(f"dask {args.threads} threads:   median {med['dask']:.3f} s "
          f"({args.objects / med['dask']:.0f} objects/s)")
    print(f"speed-up dask/numpy: {med['numpy'] / med['dask']:.2f}x")


if __name__ == "__main__":
    main()
