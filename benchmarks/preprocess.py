"""Preprocessing throughput: dask schedulers and 1 -> 2 workers, against a plain write.

    python benchmarks/preprocess.py [--objects 4096] [--size 48] [--repeats 3]

Prints, for each scheduler, the median wall time with 1 and 2 workers and the speed-up,
and the write rate against a plain sequential h5py write of the same output bytes
(same chunking and compression) measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
from timing import median_of, rate

from skysift import config as skyconfig
from skysift import io
from skysift.stamps.normalise import normalise
from skysift.stamps.preprocess import preprocess_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=4096)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 1.0, size=(args.objects, 3, args.size, args.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cutouts.h5"
        io.write_stamps(src, {"images": images}, {"tile": "bench"})
        conf = skyconfig.load()
        cfg = conf["preprocess"]
        out_bytes = images.nbytes + images.size  # float32 images + uint8 mask
        # the physical reference: the same output written sequentially, already normalised
        norm, mask = normalise(images, cfg)
        chunks = (min(cfg["chunk_objects"], args.objects),) + images.shape[1:]

        def plain_write():
            with h5py.File(Path(tmp) / "plain.h5", "w") as fh:
                fh.create_dataset("images", data=norm, chunks=chunks,
                                  **io.compression_kw(cfg["compression"]))
                fh.create_dataset("mask", data=mask, chunks=chunks, **io.compression_kw("lzf"))

        t_plain, _ = median_of(plain_write, args.repeats)
        print(f"{args.objects} stamps of 3x{args.size}^2 ({out_bytes / 1e6:.0f} MB out)")
        print(f"plain sequential write of the output: {t_plain:.2f} s "
              f"({out_bytes / 1e6 / t_plain:.0f} MB/s)")
        for scheduler in ("threads", "processes", "distributed"):
            t = {}
            for workers in (1, 2):
                conf_s = skyconfig.load(overrides=[f"preprocess.scheduler={scheduler}"])
                t[workers], _ = median_of(lambda c=conf_s, w=workers: preprocess_file(
                    src, Path(tmp) / "out.h5", c["preprocess"], c, threads=w), args.repeats)
            print(f"{scheduler:12s} 1 worker {t[1]:.2f} s, 2 workers {t[2]:.2f} s: "
                  f"speed-up {t[1] / t[2]:.2f}x; {rate(args.objects, t[2]):.0f} stamps/s; "
                  f"{t_plain / t[2]:.2f} of the plain write rate")


if __name__ == "__main__":
    main()
