"""Size and load time of the review (grading) page with many candidates, in headless chromium.

Builds a synthetic cutouts file (g r i stamps: sky noise, a red galaxy of random size and
shape, a blue arc around one in five) and a candidate list of ``--n`` objects with int64
ids above 2**53, writes the page with ``skysift review`` (the real code path), then opens
it from disk in Debian's headless chromium (as tests/workflow/test_review_e2e.py does) and
reports: page size, build time, load time (navigation start to the load event, and to the
page's script being ready), and the time the script takes to grade one object.

    python benchmarks/review_page.py --n 2000 --stamp 48
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from skysift.io import H5_LAYOUT_VERSION
from skysift.review import gallery

CONFIG = {"tasks": [{"name": "lens", "label": "is_lens"}],
          "models": [{"name": "cnn", "architecture": "baseline3"}]}


def synthetic_stamps(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) float32 g r i stamps: unit sky noise, galaxies, some arcs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = rng.normal(0.0, 1.0, (n, 3, size, size)).astype(np.float32)
    colour = np.array([0.4, 0.8, 1.0])  # red galaxy: faint in g
    for k in range(n):
        q, phi = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        x = xx * np.cos(phi) + yy * np.sin(phi)
        y = (-xx * np.sin(phi) + yy * np.cos(phi)) / q
        gal = rng.uniform(20, 200) * np.exp(-np.hypot(x, y) / rng.uniform(1.5, 4.0))
        out[k] += (colour[:, None, None] * gal).astype(np.float32)
        if k % 5 == 0:  # a blue arc at 6-10 pixels
            r0, a0 = rng.uniform(6, 10), rng.uniform(-np.pi, np.pi)
            dphi = np.angle(np.exp(1j * (np.arctan2(yy, xx) - a0)))
            arc = 15 * np.exp(-0.5 * ((np.hypot(yy, xx) - r0) / 0.8) ** 2 - 0.5 * (dphi / 0.6) ** 2)
            out[k] += (np.array([1.0, 0.6, 0.3])[:, None, None] * arc).astype(np.float32)
    return out


def build(workdir: Path, n: int, size: int) -> tuple[Path, float]:
    """Write cutouts, candidates and the page; returns (page path, seconds to build it)."""
    big = 2**62 + 1
    with h5py.File(workdir / "s0000.h5", "w") as fh:
        fh["images"] = synthetic_stamps(n, size)
        fh["index"] = np.arange(n, dtype=np.int64)
        fh["id"] = np.arange(n, dtype=np.int64) + big
        fh["flags"] = np.zeros(n, np.uint8)
        fh.attrs["bands"] = json.dumps(["g", "r", "i"])
        fh.attrs["tiles"] = json.dumps(["t0"])
        fh.attrs["zeropoint"] = json.dumps([30.0, 30.0, 30.0])
        fh.attrs["pixscale_arcsec"] = 0.2
        fh.attrs["h5_layout_version"] = H5_LAYOUT_VERSION
    with open(workdir / "lens.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "index", "id", "ra", "dec", "tile", "score_lens_cnn"])
        for k in range(n):
            w.writerow([k + 1, k, big + k, 150 + k * 1e-4, 2.0, "t0", 10.0 - k * 1e-3])
    page = workdir / "lens.html"
    t0 = time.perf_counter()
    rc = gallery.main(["--quiet", "--config-json", json.dumps(CONFIG), "--task", "lens",
                       "--candidates", str(workdir / "lens.csv"),
                       "--cutouts", str(workdir / "s0000.h5"), "--html", str(page),
                       "--sheet", str(workdir / "lens_grades.csv")])
    if rc:
        raise SystemExit(f"skysift review failed ({rc})")
    return page, time.perf_counter() - t0


def browse(page: Path, repeats: int) -> dict:
    """Load the page ``repeats`` times in headless chromium: medians of the timings (s)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(300)
    loads, ready, wall, grade_ms = [], [], [], []
    try:
        for _ in range(repeats):
            driver.get("about:blank")
            t0 = time.perf_counter()
            driver.get(page.as_uri())  # returns after the load event
            wall.append(time.perf_counter() - t0)
            t = driver.execute_script(
                "var n = performance.getEntriesByType('navigation')[0];"
                "return [n.loadEventEnd, n.domContentLoadedEventEnd];")
            decoded = driver.execute_script(
                "return Array.from(document.querySelectorAll('#grid img'))"
                ".filter(i => i.complete).length;")
            loads.append(t[0] / 1000)
            ready.append(t[1] / 1000)
            grade_ms.append(driver.execute_script(
                "localStorage.clear(); var t0 = performance.now();"
                "for (var k = 0; k < 50; k++) document.dispatchEvent(new KeyboardEvent("
                "'keydown', {key: 'abcn'[k % 4], bubbles: true}));"
                "return (performance.now() - t0) / 50;"))
        heap = driver.execute_script("return performance.memory ? "
                                     "performance.memory.usedJSHeapSize : null;")
    finally:
        driver.quit()
    return {"load_s": float(np.median(loads)), "dom_ready_s": float(np.median(ready)),
            "get_wall_s": float(np.median(wall)), "grade_ms": float(np.median(grade_ms)),
            "js_heap_mb": None if heap is None else heap / 2**20, "thumbs_loaded": decoded}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="candidates on the page")
    p.add_argument("--stamp", type=int, default=48, help="stamp size, pixels")
    p.add_argument("--repeats", type=int, default=3, help="page loads (median reported)")
    p.add_argument("--keep", help="write the files here instead of a temporary folder")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        page, build_s = build(workdir, args.n, args.stamp)
        size_mb = page.stat().st_size / 1e6
        res = browse(page, args.repeats)
    print(f"{args.n} candidates, 3x{args.stamp}^2 stamps: page {size_mb:.1f} MB "
          f"({1e3 * size_mb / args.n:.1f} kB each), built in {build_s:.1f} s; chromium: load "
          f"event {res['load_s']:.2f} s (DOMContentLoaded {res['dom_ready_s']:.2f} s, "
          f"driver.get {res['get_wall_s']:.2f} s), one grade {res['grade_ms']:.2f} ms, JS heap "
          f"{res['js_heap_mb']:.0f} MB, {res['thumbs_loaded']} thumbnails loaded at first (lazy; "
          f"medians of {args.repeats} loads)")


if __name__ == "__main__":
    main()
