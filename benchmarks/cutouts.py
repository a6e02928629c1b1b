"""Benchmark skysift's stamp extraction: against astropy Cutout2D, astrocut and a memory copy.

In one process, on one synthetic 3-band 4096^2 float32 tile with a TAN WCS and a few
thousand catalog positions (RA/Dec, some near the edges), it times (medians of --repeats)

  (a) the astropy-docs way: ``Cutout2D(data, SkyCoord, size, wcs=wcs, mode="partial",
      fill_value=nan, copy=True)`` per object and band;
  (a') Cutout2D with pixel positions: one vectorised ``wcs.world_to_pixel`` for every object
      (included in the time), then ``Cutout2D(data, (x, y), size, mode="partial",
      fill_value=nan, copy=True)`` per object and band;
  (c) astrocut on the same tile written as plain FITS (page cache warm): ``fits_cut(files,
      SkyCoord, size, memory_only=True)`` per object, all bands per call (no astrocut
      release cuts many positions per call); in a child process (cutouts_astrocut.py),
      with --astrocut-python when a newer astrocut lives in another environment; on the
      first --astrocut-n objects (its rate per stamp does not depend on how many);
  (b) a memory copy (``np.copyto``) of the same output bytes: the physical limit;
  skysift: one vectorised ``all_world2pix`` for every object, then ``cutouts.extract``;

and prints stamps/s, the ratio to the fastest of (a), (a') and (c), to (a), and the fraction
of (b). It checks that skysift, Cutout2D and astrocut give identical stamps wherever they
cut the same pixels (all objects for an odd size; for an even size they centre between
pixels differently). Then the fpack case: the tile written as plain FITS and as RICE_1
``.fits.fz``, read with ``survey.read_tile`` and cut, end to end; and, in a fresh
subprocess per format, the peak memory (VmHWM) of the real cutouts step
(``cutouts.cut_objects``) against the bound in docs/formats.md.

    python benchmarks/cutouts.py [--tile-pix 4096] [--n-objects 3000] [--size 48]
        [--astrocut-n 300] [--astrocut-python PATH]
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
from timing import median_of, peak_rss_kib, timed

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
    """(b): median time of ``np.copyto`` between two float32 buffers of ``n_bytes``."""
    src, dst = np.ones(n_bytes // 4, np.float32), np.empty(n_bytes // 4, np.float32)
    return median_of(lambda: np.copyto(dst, src), repeats)[0]


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


def cutout2d_pix_all(images, wcs, sky, size):
    """(a'): one vectorised ``world_to_pixel``, then one Cutout2D per object and band at the
    pixel position (no WCS handed to Cutout2D: nothing to convert or copy per call)."""
    x, y = wcs.world_to_pixel(sky)
    out = np.empty((len(sky), len(images), size, size), np.float32)
    for k in range(len(sky)):
        for b in range(len(images)):
            # position (x, y), size (ny, nx)
            cut = Cutout2D(images[b], (x[k], y[k]), (size, size), mode="partial",
                           fill_value=np.nan, copy=True)
            out[k, b] = cut.data
    return out


def astrocut_run(root: Path, files: list[str], ra, dec, size: int, repeats: int,
                 python: str) -> dict | None:
    """(c): astrocut in a child process; None (and why, printed) when it cannot run."""
    (root / "astrocut_in.json").write_text(json.dumps({
        "files": files, "ra": list(map(float, ra)), "dec": list(map(float, dec)),
        "size": size, "repeats": repeats}))
    proc = subprocess.run([python, str(Path(__file__).with_name("cutouts_astrocut.py")),
                           str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  (c) astrocut did not run ({python}): {proc.stderr.strip().splitlines()[-1]}"
              "; pip install -c constraints.txt '.[bench]'")
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    out = np.load(root / "astrocut_out.npz")
    res["stamps"], res["origins"] = out["stamps"], out["origins"]
    return res


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
    p.add_argument("--repeats", type=int, default=3, help="fast methods: median of this many")
    p.add_argument("--astrocut-n", type=int, default=300, help="objects astrocut cuts")
    p.add_argument("--astrocut-python", default=sys.executable,
                   help="interpreter with astrocut installed (default: this one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, Path(tmp))


def same_pixels(stamps, origins, ref, ref_origins) -> tuple[bool, int]:
    """Whether the stamps cut at the same first pixel are identical, and how many are."""
    same = (origins == ref_origins).all(axis=1)
    return np.array_equal(stamps[same], ref[same], equal_nan=True), int(same.sum())


def run(args, root: Path) -> int:
    n_band, s, n = len(BANDS), args.size, args.n_objects
    images, wcs, ra, dec = make_tile(args.tile_pix, n_band, n, args.seed)
    sky = SkyCoord(ra, dec, unit="deg")
    out_bytes = n * n_band * s * s * 4
    t_copy = memcpy_time(out_bytes, args.repeats * 3)
    pos = np.column_stack(wcs.all_world2pix(ra, dec, 0))
    buf = np.zeros((n, n_band, s, s), np.float32)  # reused, as the cutouts step reuses its own
    t_full, (stamps, flags) = median_of(
        lambda: skysift_from_radec(images, wcs, ra, dec, s, buf), args.repeats)
    t_ext_only, _ = median_of(lambda: extract(images, pos, s, out=buf), args.repeats)
    t_alloc, _ = median_of(lambda: extract(images, pos, s), args.repeats)
    t_ref, (ref, ref_origin) = median_of(lambda: cutout2d_all(images, wcs, sky, s), 1)
    t_pix, ref_pix = median_of(lambda: cutout2d_pix_all(images, wcs, sky, s), args.repeats)
    write_bands(root, images, wcs, compressed=False)
    n_ac = min(n, args.astrocut_n)
    ac = astrocut_run(root, [str(root / f"T_{b}.fits") for b in BANDS], ra[:n_ac],
                      dec[:n_ac], s, args.repeats, args.astrocut_python)

    origin = stamp_origin(pos, s)
    identical, n_same = same_pixels(stamps, origin, ref, ref_origin)
    identical &= np.array_equal(ref_pix, ref, equal_nan=True)
    odd = s | 1  # at an odd size every method cuts the same pixels: compare everything
    sub = slice(0, min(n, 300))
    odd_ref, _ = cutout2d_all(images, wcs, sky[sub], odd)
    identical &= np.array_equal(extract(images, pos[sub], odd)[0], odd_ref, equal_nan=True)
    print(f"tile {n_band} x {args.tile_pix}^2 float32 ({images.nbytes / 2**20:.0f} MiB), {n} "
          f"positions ({int((flags & 1).sum())} at an edge), {s}x{s} stamps "
          f"({out_bytes / 2**20:.0f} MiB out); one process, median of {args.repeats}")
    rows = [("(a) astropy Cutout2D(SkyCoord) per object+band", t_ref, n),
            ("(a') world_to_pixel + Cutout2D(x, y) per obj+band", t_pix, n)]
    if ac is not None:
        ac_same, ac_n_same = same_pixels(stamps[:n_ac], origin[:n_ac], ac["stamps"],
                                         ac["origins"])
        identical &= ac_same
        ac_name = f"(c) astrocut {ac['version']} fits_cut per object"
        rows.append((ac_name, ac["seconds"], n_ac))
    fastest = max(rows, key=lambda r: r[2] / r[1])
    rows += [("(b) memory copy of the output bytes", t_copy, n),
             ("skysift: all_world2pix + extract", t_full, n),
             ("skysift: extract from pixel positions", t_ext_only, n),
             ("skysift: extract, new output array", t_alloc, n)]
    per_s = {name: k * n_band / sec for name, sec, k in rows}
    print(f"  {'method':50s} {'seconds':>9s} {'stamps/s':>10s} {'MiB/s':>7s} "
          f"{'x best':>7s} {'x (a)':>7s} {'of (b)':>7s}")
    for name, sec, k in rows:
        print(f"  {name:50s} {sec:9.4f} {per_s[name]:10.0f} "
              f"{k * n_band * s * s * 4 / 2**20 / sec:7.0f} {per_s[name] / per_s[fastest[0]]:7.1f}"
              f" {per_s[name] / per_s[rows[0][0]]:7.1f} {t_copy / sec * k / n:7.3f}")
    print(f"  x best = ratio to the fastest baseline, {fastest[0].split()[0]}; stamps = one "
          f"object in one band (astrocut: {n_ac} objects, files read through the page cache)")
    print(f"  Identical to Cutout2D: {identical} (on the {n_same}/{n} objects both cut at the "
          f"same pixels at size {s}, and on {len(range(n)[sub])} objects at size {odd})"
          + (f"; to astrocut on the {ac_n_same}/{n_ac} cut at the same pixels"
             if ac is not None else ""))
    for f in root.glob("T_*"):
        f.unlink()
    t_fast = fastest[1] * n / fastest[2]  # the fastest baseline's seconds for n objects
    print("end to end from FITS files (read_tile, then extract; then the cutouts step, "
          "fresh process):")
    for compressed in (False, True):
        pattern = write_bands(root, images, wcs, compressed)
        config = validate({"survey": {"kind": "files", "tiles": pattern, "bands": BANDS,
                                      "catalog": "unused.fits", "labels": None}})
        # the page cache is warm, one tile held at a time
        t_read, stack = median_of(lambda c=config: read_tile(c, "T"), 3, release=True)
        t_cut, _ = median_of(lambda st=stack: extract(st.images, pos, s), args.repeats)
        del stack
        mem = memory_run(root, pattern, ra, dec, wcs, s)
        chunk = 4 * 256 * n_band * s * s * 4  # the HDF5 chunk cache of the writer
        bound = ((n_band + 1) * 4 * args.tile_pix**2 + chunk) / 2**20 + 64
        label = "fpack RICE_1 .fits.fz" if compressed else "plain .fits"
        size = sum(f.stat().st_size for f in root.glob("T_*")) / 2**20
        e2e = n * n_band / (t_read + t_cut)
        print(f"  {label:22s} ({size:4.0f} MiB): read {t_read:6.3f} s + cut {t_cut:6.3f} s"
              f" = {e2e:7.0f} stamps/s; fastest baseline after the same read "
              f"{n * n_band / (t_read + t_fast):5.0f} stamps/s "
              f"(skysift x{(t_read + t_fast) / (t_read + t_cut):.1f})"
              + (f"; astrocut from the files x{e2e / per_s[ac_name]:.0f}"
                 if ac is not None and not compressed else ""))
        print(f"  {'':22s} cutouts step (read + cut + write HDF5) {mem['seconds']:.2f} s, "
              f"peak memory +{mem['growth_mib']:.0f} MiB (bound (bands + 1) x 4 B/pixel + "
              f"64 MiB batch + chunk cache = {bound:.0f} MiB)")
        for f in root.glob("T_*"):
            f.unlink()
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
