"""Benchmark skysift.cutouts.extract against a per-object astropy Cutout2D loop.

Both run in this process on the same synthetic tile and positions; the script prints the
median time of each over a few repeats, their ratio, and checks that the two agree pixel
for pixel on every stamp that lies fully inside the tile.

    python benchmarks/bench_cutouts.py [--tile-pix 2048] [--n-objects 2000] [--size 48]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from astropy.nddata import Cutout2D

from skysift.cutouts import EDGE, extract, stamp_origin


def cutout2d_loop(images: np.ndarray, pos_xy: np.ndarray, size_pix: int) -> np.ndarray:
    """The baseline: one Cutout2D per object and band (mode='partial', NaN fill).

    Cutout2D centres even-sized stamps on the continuous position, so it is given the
    object's pixel ``round(pos)`` to follow the skysift geometry (docs/formats.md).
    """
    n_band = images.shape[0]
    pix = np.floor(pos_xy + 0.5)
    out = np.empty((len(pos_xy), n_band, size_pix, size_pix), np.float32)
    for k, (x, y) in enumerate(pix):
        for b in range(n_band):
            # Cutout2D takes position as (x, y) but size as (ny, nx)
            out[k, b] = Cutout2D(images[b], (x, y), (size_pix, size_pix), mode="partial",
                                 fill_value=np.nan, copy=True).data
    return out


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile-pix", type=int, default=2048, help="side of the synthetic tile")
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--n-objects", type=int, default=2000)
    p.add_argument("--size", type=int, default=48, help="stamp side, pixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    n = args.tile_pix
    images = rng.normal(size=(args.bands, n, n)).astype(np.float32)
    # positions anywhere on the tile, including partial stamps at the edges
    pos_xy = rng.uniform(-0.5, n - 0.5, size=(args.n_objects, 2))

    t_vec, (stamps, flags) = timed(lambda: extract(images, pos_xy, args.size), args.repeats)
    t_loop, baseline = timed(lambda: cutout2d_loop(images, pos_xy, args.size), args.repeats)

    origin = stamp_origin(pos_xy, args.size)
    inside = (origin >= 0).all(axis=1) & (origin + args.size <= n).all(axis=1)
    same = (np.array_equal(stamps[inside], baseline[inside])
            and np.array_equal((flags & EDGE) == 0, inside))
    print(f"tile {args.bands}x{n}x{n}, {args.n_objects} objects ({inside.sum()} fully inside), "
          f"{args.size}x{args.size} stamps, median of {args.repeats}")
    for name, seconds in (("skysift extract (vectorised)", t_vec),
                          ("astropy Cutout2D loop", t_loop)):
        print(f"  {name:30s} {seconds:8.4f} s  ({args.n_objects / seconds:10.0f} objects/s)")
    print(f"  speed-up: {t_loop / t_vec:.1f}x; fully-inside stamps identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
