"""Benchmark skysift's stamp extraction: against astropy Cutout2D and against a memory copy.

In one process, on one synthetic 3-band 4096^2 float32 tile with a TAN WCS and a few
thousand catalog positions (RA/Dec, some near the edges), it times

  (a) the astropy-docs way: ``Cutout2D(data, SkyCoord, size, wcs=wcs, mode="partial",
      fill_value=nan, copy=True)`` per object and band;
  (b) a memory copy (``np.copyto``) of the same output bytes: the physical limit;
  skysift: one vectorised ``all_world2pix`` for every object, then ``cutouts.extract``;

and prints stamps/s, the ratio to (a) and the fraction of (b). It checks that skysift and
Cutout2D give identical stamps wherever they cut the same pixels (all objects for an odd
size; for an even size Cutout2D centres between pixels differently). Then the fpack case:
the tile written as plain FITS and as RICE_1 ``.fits.fz``, read with ``survey.read_tile``
and cut, end to end; and, in a fresh subprocess per format, the peak memory of the real
cutouts step (``cutouts.cut_objects``) against the bound in docs/formats.md.

    python benchmarks/cutouts.py [--tile-pix 4096] [--n-objects 3000] [--size 48]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
from timing import best_of, peak_rss_kib, timed

from skysift.config import validate
from skysift.stamps.cut import extract, stamp_origin
from skysift.stamps.cutouts import cut_objects
from skysift.survey.tiles import read_tile

BANDS = ["g", "r", "i"]


def make_tile(n_pix: int, n_band: int, n_obj: int, seed: int):
    """Noise tile (band, y, x), its WCS, and catalog positions (RA/Dec) incl. edge objects."""
    rng = np.random.default_rng(seed)
    images = (rng.normal(size=(n_band, n_pix, n_pix)) * 5 + 100).astype(np.float32)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [35.0, -5.0]
    wcs.wcs.crpix = [(n_pix + 1) / 2] * 2
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    wcs.wcs.cd = 0.263 / 3600 * np.array([[-c, s], [s, c]])
    xy = rng.uniform(-0.5, n_pix - 0.5, size=(n_obj, 2))
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    return images, wcs, ra, dec


def memcpy_time(n_bytes: int, repeats: int) -> float:
    """(b): best time of ``np.copyto`` between two float32 buffers of ``n_bytes``."""
    src, dst = np.ones(n_bytes // 4, np.float32), np.empty(n_bytes // 4, np.float32)
    return best_of(lambda: np.copyto(dst, src), repeats)[0]


def cutout2d_all(images, wcs, sky, size):
    """(a): one Cutout2D per object and band, positions as SkyCoord (the astropy docs)."""
    out = np.empty((len(sky), len(images), size, size), np.float32)
    origins = np.empty((len(sky), 2), np.int64)
    for k in range(len(sky)):
        for b in range(len(images)):
            # Cutout2D takes the position as (x, y) or SkyCoord, the size as (ny, nx)
            cut = Cutout2D(images[b], sky[k], (size, size), wcs=wcs, mode="partial",
                           fill_value=np.nan, copy=True)
            out[k, b] = cut.data
        origins[k] = cut.origin_original
    return out, origins


def skysift_from_radec(images, wcs, ra, dec, size, out):
    x, y = wcs.all_world2pix(ra, dec, 0)
    return extract(images, np.column_stack([x, y]), size, out=out)


def write_bands(root: Path, images, wcs, compressed: bool) -> str:
    ext = ".fits.fz" if compressed else ".fits"
    for band, data in zip(BANDS, images, strict=True):
        header = wcs.to_header()
        header["PSF_FWHM"], header["MAGZP"] = 1.0, 30.0
        path = root / f"T_{band}{ext}"
        if compressed:
            hdu = fits.CompImageHDU(data, header=header, compression_type="RICE_1")
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
        else:
            fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)
    return str(root / f"{{tile}}_{{band}}{ext}")


def child(workdir: str) -> int:
    """Peak RSS growth (MiB) of the real cutouts step on the tile in ``workdir``."""
    root = Path(workdir)
    config = json.loads((root / "config.json").read_text())
    rows = dict(np.load(root / "rows.npz"))
    base = peak_rss_kib()
    seconds, res = timed(cut_objects, config, rows, root / "out.h5", root / "rejects.ecsv",
                         "bench")
    peak = peak_rss_kib()
    print(json.dumps({"growth_mib": (peak - base) / 1024, "seconds": seconds,
                      "n": res["n_objects"]}))
    return 0


def memory_run(root: Path, pattern: str, ra, dec, wcs, size: int) -> dict:
    config = validate({"survey": {"kind": "files", "tiles": pattern, "bands": BANDS,
                                  "catalog": "unused.fits", "labels": None},
                       "cutouts": {"stamp_size_pix": size}})
    x, y = wcs.all_world2pix(ra, dec, 0)
    n = len(ra)
    np.savez(root / "rows.npz", index=np.arange(n), id=np.arange(n), ra=ra, dec=dec,
             tile=np.full(n, "T"), x_pix=x, y_pix=y)
    (root / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, __file__, "--child", str(root)], check=True,
                          capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile-pix", type=int, default=4096, help="side of the synthetic tile")
    p.add_argument("--n-objects", type=int, default=3000)
    p.add_argument("--size", type=int, default=48, help="stamp side, pixels")
    p.add_argument("--repeats", type=int, default=3, help="fast methods: best of this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)

    n_band, s, n = len(BANDS), args.size, args.n_objects
    images, wcs, ra, dec = make_tile(args.tile_pix, n_band, n, args.seed)
    sky = SkyCoord(ra, dec, unit="deg")
    out_bytes = n * n_band * s * s * 4
    t_copy = memcpy_time(out_bytes, args.repeats * 3)
    pos = np.column_stack(wcs.all_world2pix(ra, dec, 0))
    buf = np.zeros((n, n_band, s, s), np.float32)  # reused, as the cutouts step reuses its own
    t_full, (stamps, flags) = best_of(
        lambda: skysift_from_radec(images, wcs, ra, dec, s, buf), args.repeats)
    t_ext_only, _ = best_of(lambda: extract(images, pos, s, out=buf), args.repeats)
    t_alloc, _ = best_of(lambda: extract(images, pos, s), args.repeats)
    t_ref, (ref, ref_origin) = best_of(lambda: cutout2d_all(images, wcs, sky, s), 1)

    same_px = (stamp_origin(pos, s) == ref_origin).all(axis=1)
    identical = np.array_equal(stamps[same_px], ref[same_px], equal_nan=True)
    odd = s | 1  # at an odd size both conventions cut the same pixels: compare everything
    sub = slice(0, min(n, 300))
    odd_ref, _ = cutout2d_all(images, wcs, sky[sub], odd)
    identical &= np.array_equal(extract(images, pos[sub], odd)[0], odd_ref, equal_nan=True)
    print(f"tile {n_band} x {args.tile_pix}^2 float32 ({images.nbytes / 2**20:.0f} MiB), {n} "
          f"positions ({int((flags & 1).sum())} at an edge), {s}x{s} stamps "
          f"({out_bytes / 2**20:.0f} MiB out); one process, best of {args.repeats}")
    print(f"  {'method':44s} {'seconds':>9s} {'stamps/s':>10s} {'MiB/s':>7s} "
          f"{'x (a)':>7s} {'of (b)':>7s}")
    rows = [("(a) astropy Cutout2D(SkyCoord) per object+band", t_ref),
            ("(b) memory copy of the output bytes", t_copy),
            ("skysift: all_world2pix + extract", t_full),
            ("skysift: extract from pixel positions", t_ext_only),
            ("skysift: extract, new output array", t_alloc)]
    for name, sec in rows:
        print(f"  {name:44s} {sec:9.4f} {n * n_band / sec:10.0f} {out_bytes / 2**20 / sec:7.0f} "
              f"{t_ref / sec:7.1f} {t_copy / sec:7.2f}")
    print(f"  stamps = one object in one band. Identical to Cutout2D: {identical} (on the "
          f"{int(same_px.sum())}/{n} objects both cut at the same pixels at size {s}, and on "
          f"{len(range(n)[sub])} objects at size {odd})")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("end to end from FITS files (read_tile, then extract; then the cutouts step, "
              "fresh process):")
        for compressed in (False, True):
            pattern = write_bands(root, images, wcs, compressed)
            config = validate({"survey": {"kind": "files", "tiles": pattern, "bands": BANDS,
                                          "catalog": "unused.fits", "labels": None}})
            # best of 2: the page cache is warm, one tile held at a time
            t_read, stack = best_of(lambda c=config: read_tile(c, "T"), 2, release=True)
            t_cut, _ = best_of(lambda st=stack: extract(st.images, pos, s), args.repeats)
            del stack
            mem = memory_run(root, pattern, ra, dec, wcs, s)
            chunk = 4 * 256 * n_band * s * s * 4  # the HDF5 chunk cache of the writer
            bound = ((n_band + 1) * 4 * args.tile_pix**2 + chunk) / 2**20 + 64
            label = "fpack RICE_1 .fits.fz" if compressed else "plain .fits"
            size = sum(f.stat().st_size for f in root.glob("T_*")) / 2**20
            print(f"  {label:22s} ({size:4.0f} MiB): read {t_read:6.3f} s + cut {t_cut:6.3f} s"
                  f" = {n * n_band / (t_read + t_cut):7.0f} stamps/s; Cutout2D after the same "
                  f"read {n * n_band / (t_read + t_ref):5.0f} stamps/s "
                  f"(skysift x{(t_read + t_ref) / (t_read + t_cut):.1f})")
            print(f"  {'':22s} cutouts step (read + cut + write HDF5) {mem['seconds']:.2f} s, "
                  f"peak memory +{mem['growth_mib']:.0f} MiB (bound (bands + 1) x 4 B/pixel + "
                  f"64 MiB batch + chunk cache = {bound:.0f} MiB)")
            for f in root.glob("T_*"):
                f.unlink()
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
