"""The astrocut side of benchmarks/cutouts.py, run as a child process.

astrocut cuts from FITS files, one sky position per call: ``fits_cut(files, SkyCoord,
size, memory_only=True)`` opens every band's file (memory-mapped), cuts the same position in
each and returns one HDUList (a primary HDU, then one ImageHDU per band). No astrocut release
cuts many positions per call (``cube_cut``/``CutoutFactory`` cut TESS cubes, one position),
so this is the fastest public way to cut many positions from one image with it. It needs only
numpy, astropy and astrocut, so that cutouts.py can run it with another interpreter
(``--astrocut-python``) where a newer astrocut is installed than the lock file allows.

    python benchmarks/cutouts_astrocut.py WORKDIR   # reads WORKDIR/astrocut_in.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits


def cut_all(astrocut, files: list[str], sky: SkyCoord, size: int) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Stamps (n, band, size, size) and origins (n, 2) as (x, y) of every position."""
    out = np.empty((len(sky), len(files), size, size), np.float32)
    origins = np.empty((len(sky), 2), np.int64)
    with fits.open(files[0]) as hdul:
        crpix = np.array([hdul[0].header["CRPIX1"], hdul[0].header["CRPIX2"]])
    for k in range(len(sky)):
        hdul = astrocut.fits_cut(files, sky[k], size, memory_only=True)[0]
        bands = [hdu for hdu in hdul if hdu.data is not None]
        for b, hdu in enumerate(bands):
            out[k, b] = hdu.data
        # the cutout WCS is the tile's shifted by the cutout's first pixel (zero-based)
        origins[k] = np.rint(crpix - [bands[0].header["CRPIX1"], bands[0].header["CRPIX2"]])
    return out, origins


def main(workdir: str) -> int:
    root = Path(workdir)
    job = json.loads((root / "astrocut_in.json").read_text())
    with warnings.catch_warnings():  # old releases warn at import (astropy's TestRunner)
        warnings.simplefilter("ignore")
        import astrocut
    sky = SkyCoord(job["ra"], job["dec"], unit="deg")
    times = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        stamps, origins = cut_all(astrocut, job["files"], sky, job["size"])
        times.append(time.perf_counter() - start)
    np.savez(root / "astrocut_out.npz", stamps=stamps, origins=origins)
    print(json.dumps({"version": astrocut.__version__, "seconds": statistics.median(times),
                      "n_stamps": int(stamps.shape[0] * stamps.shape[1]),
                      "repeats": job["repeats"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
