"""Pack a training set small enough to travel to a GPU machine: uint8-quantised images.

The images (arcsinh units, pixel noise ~0.33) are stored as round((x - lo) / step) in
uint8 with gzip; ``unpack`` restores a regular float32 training set (docs/formats.md) with
every attribute, so the real training loop reads it. With step 0.05 the quantisation adds
a uniform error of sigma 0.014, i.e. 0.2 % to the pixel-noise variance. Optionally keep
only a random fraction of the train split (val and test are kept whole). Training sets of
other tasks cut from the same stamps (same ``index`` order) travel as their labels alone.

    python benchmarks/pack_trainset.py pack results/train/lens.h5 packed.h5 [--train-keep 0.7]
        [--also results/train/merger.h5]
    python benchmarks/pack_trainset.py unpack packed.h5 lens.h5 [--task merger]

With ``--xz`` the quantised images go to ``packed.h5.q.xz`` (raw uint8, C order, xz), about
30 % smaller than gzip in HDF5; ``unpack`` reads that file when ``packed.h5`` has no ``q``.
"""

from __future__ import annotations

import argparse
import json
import lzma
from pathlib import Path

import h5py
import numpy as np

from skysift.io import H5_LAYOUT_VERSION, write_stamps

KEYS = ("label", "split", "index", "id", "flags")


def pack(src: str, dst: str, step: float, lo: float, train_keep: float, seed: int,
         also: list[str], xz: bool = False) -> None:
    with h5py.File(src, "r") as fh:
        split = fh["split"][()]
        rng = np.random.default_rng(seed)
        keep = (split != 0) | (rng.random(split.size) < train_keep)
        rows = np.flatnonzero(keep)
        shape = (rows.size,) + fh["images"].shape[1:]
        with h5py.File(dst, "w") as out:
            # quantised blocks go to one sink: the HDF5 dataset, or the xz stream beside it
            if xz:
                sink = lzma.open(dst + ".q.xz", "wb", preset=6)
                out.attrs["q_shape"] = shape
            else:
                sink = out.create_dataset("q", shape, np.uint8, chunks=(256,) + shape[1:],
                                          compression="gzip", compression_opts=9)
            for start in range(0, rows.size, 1024):
                r = rows[start:start + 1024]
                x = fh["images"][r[0]:r[-1] + 1][r - r[0]]
                q = np.clip(np.round((x - lo) / step), 0, 255).astype(np.uint8)
                if xz:
                    sink.write(q.tobytes())
                else:
                    sink[start:start + len(r)] = q
            if xz:
                sink.close()
            for key in KEYS:
                out.create_dataset(key, data=fh[key][()][rows])
            for key, value in fh.attrs.items():
                out.attrs[key] = value
            out.attrs["q_lo"], out.attrs["q_step"] = lo, step
            for other in also:
                with h5py.File(other, "r") as fo:
                    if not np.array_equal(fo["index"][()], fh["index"][()]):
                        raise SystemExit(f"{other}: not cut from the same stamps as {src}")
                    task = fo.attrs["task"]
                    out.create_dataset(f"label_{task}", data=fo["label"][()][rows])
                    out[f"label_{task}"].attrs["attrs"] = json.dumps(
                        {k: fo.attrs[k] for k in ("task", "label_column") if k in fo.attrs})


def unpack(src: str, dst: str, task: str | None = None) -> None:
    with h5py.File(src, "r") as fh:
        lo, step = float(fh.attrs["q_lo"]), float(fh.attrs["q_step"])
        if "q" in fh:
            q = fh["q"][()]
        else:
            with lzma.open(Path(src + ".q.xz"), "rb") as fq:
                q = np.frombuffer(fq.read(), np.uint8).reshape(tuple(fh.attrs["q_shape"]))
        images = q.astype(np.float32) * np.float32(step) + np.float32(lo)
        arrays = {"images": images, "mask": np.ones(images.shape, np.uint8)}
        arrays.update({key: fh[key][()] for key in KEYS})
        attrs = {k: v for k, v in fh.attrs.items()
                 if k not in ("q_lo", "q_step", "q_shape", "counts")}
        if task is not None and task != attrs.get("task"):
            arrays["label"] = fh[f"label_{task}"][()]
            attrs.update(json.loads(fh[f"label_{task}"].attrs["attrs"]))
    attrs["h5_layout_version"] = H5_LAYOUT_VERSION
    write_stamps(dst, arrays, attrs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("pack")
    a.add_argument("src")
    a.add_argument("dst")
    a.add_argument("--step", type=float, default=0.05)
    a.add_argument("--lo", type=float, default=-2.0)
    a.add_argument("--train-keep", type=float, default=1.0)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--also", nargs="*", default=[], help="other tasks' training sets")
    a.add_argument("--xz", action="store_true", help="images to DST.q.xz (smaller)")
    b = sub.add_parser("unpack")
    b.add_argument("src")
    b.add_argument("dst")
    b.add_argument("--task", help="the task whose labels to write (default: the packed one)")
    args = p.parse_args()
    if args.cmd == "pack":
        pack(args.src, args.dst, args.step, args.lo, args.train_keep, args.seed, args.also,
             args.xz)
    else:
        unpack(args.src, args.dst, args.task)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
