"""Benchmark scoring a survey: tiles -> scores straight (``infer --shard``) against today's
path (``cutouts`` -> ``preprocess`` -> ``infer --stamps``), measured in one run.

Builds once, cached under ``--cache``, a synthetic survey per size: fpack (RICE_1) tiles of
3 bands at 0.2"/px, ``--tile-pix`` square, 40 catalogued objects per arcmin² placed at
random on each tile (a faint Gaussian source at each, on sky noise), a FITS catalog and
the survey index (``skysift check`` + ``skysift index``, as the workflow runs them). Then,
per size, every shard is scored by each path, each step a fresh ``python -m skysift``
process as Snakemake would start it, one after the other, and it reports

- objects/s from tiles to scores tables (wall time of all steps, process starts included);
- CPU seconds per object (user + system of the steps and every process they started);
- bytes written per object beyond the tiles and the scores tables (the index, which both
  paths share, on its own line; the shard's rejects table, which each path writes, counted);
- the peak memory of each process by its own high-water mark (``VmHWM``: the scoring
  job and each decode worker report theirs; the other steps through a wrapper that reads
  it at exit), the largest over the shards.

The model is ``baseline3`` (or ``--arch``) with random weights: its speed does not depend
on them. Sizes 10⁴ and 10⁵ by default (10⁶: ``--sizes 1000000``); today's path at
``--baseline-sizes`` (default: the smallest size; it writes ~2 × 49 kB per object).

    python benchmarks/survey.py --cache /tmp/survey-bench [--sizes 10000 100000]
        [--baseline-sizes 10000] [--in-flight 2] [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

BANDS = ["g", "r", "i"]
PIXSCALE = 0.2  # arcsec
DENSITY = 40.0  # objects per arcmin²
STAMP = 64


def tile_wcs(i: int, n_pix: int) -> WCS:
    """TAN WCS of tile ``i`` on a grid of non-overlapping tiles near (150, 2)."""
    side_deg = n_pix * PIXSCALE / 3600
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0 + (i % 20) * side_deg * 1.05, 2.0 + (i // 20) * side_deg * 1.05]
    w.wcs.crpix = [(n_pix + 1) / 2] * 2
    w.wcs.cd = PIXSCALE / 3600 * np.array([[-1.0, 0.0], [0.0, 1.0]])
    return w


def write_survey(root: Path, n_objects: int, n_pix: int, seed: int = 0) -> dict:
    """fpack tiles, catalog and config of a survey of about ``n_objects`` objects."""
    per_tile = int(round(DENSITY * (n_pix * PIXSCALE / 60) ** 2))
    n_tiles = max(1, math.ceil(n_objects / per_tile))
    (root / "tiles").mkdir(parents=True, exist_ok=True)
    ids, ras, decs = [], [], []
    yy, xx = np.mgrid[-4:5, -4:5]
    blob = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2)).astype(np.float32)
    for t in range(n_tiles):
        rng = np.random.default_rng([seed, t])
        wcs = tile_wcs(t, n_pix)
        xy = rng.uniform(4, n_pix - 5, size=(per_tile, 2))
        for b, band in enumerate(BANDS):
            img = rng.normal(100.0, 5.0, size=(n_pix, n_pix)).astype(np.float32)
            amp = rng.uniform(2, 60, per_tile).astype(np.float32) * (1 + 0.3 * b)
            for (x, y), a in zip(np.rint(xy).astype(int), amp, strict=True):
                img[y - 4:y + 5, x - 4:x + 5] += a * blob
            header = wcs.to_header()
            header["PSF_FWHM"], header["MAGZP"] = 0.7, 27.0
            hdu = fits.CompImageHDU(img, header=header, compression_type="RICE_1")
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
                root / "tiles" / f"T{t:05d}_{band}.fits.fz", overwrite=True)
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        ids.append(np.arange(per_tile, dtype=np.int64) + t * per_tile + 10**12)
        ras.append(ra)
        decs.append(dec)
    Table({"objid": np.concatenate(ids), "ra": np.concatenate(ras),
           "dec": np.concatenate(decs)}).write(root / "cat.fits", overwrite=True)
    return {"n_tiles": n_tiles, "per_tile": per_tile}


def bench_config(root: Path, device: str, threads: int, in_flight: int) -> dict:
    from skysift.config import validate
    return validate({
        "survey": {"kind": "files", "tiles": str(root / "tiles" / "{tile}_{band}.fits.fz"),
                   "bands": BANDS, "catalog": str(root / "cat.fits"), "labels": None},
        "cutouts": {"stamp_size_pix": STAMP},
        "train": {"device": device, "threads": threads, "precision": "auto"},
        "infer": {"tiles_in_flight": in_flight}})


def write_model(path: Path, config: dict, arch: str) -> None:
    import torch

    from skysift.config import load
    from skysift.learn.checkpoints import save_checkpoint
    from skysift.learn.models import build_model
    torch.manual_seed(0)
    model = build_model(arch, len(BANDS), STAMP)
    meta = {"architecture": arch, "task": "lens", "model": "cnn", "bands": BANDS,
            "pixscale_arcsec": PIXSCALE, "stamp_size_pix": STAMP,
            "normalisation": dict(config["preprocess"]), "in_channels": len(BANDS),
            "provenance": {"seed": 0}}
    save_checkpoint(path, {"model_state": model.state_dict(), "optimizer_state": {},
                           "scheduler_state": {}, "scaler_state": {}, "rng_state": {},
                           "epoch": 0, "config": load(), "meta": meta})


def step(args: list[str], log: Path) -> dict:
    """Run ``python -m skysift ARGS`` through this script's wrapper; wall, CPU, VmHWM."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, __file__, "--child", *args], stderr=err,
                              stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"skysift {' '.join(args[:1])} failed: see {log}")
    text = log.read_text()
    worker = re.search(r"KiB here, (\d+) KiB per decode worker", text)
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime)
            + (after.ru_stime - before.ru_stime),
            "peak_kib": int(proc.stdout.strip().splitlines()[-1]),
            "worker_kib": int(worker.group(1)) if worker else None}


def child(args: list[str]) -> int:
    """Run ``skysift ARGS`` in this process; print its own VmHWM (KiB) at exit."""
    sys.argv = ["skysift", *args]
    try:
        runpy.run_module("skysift", run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            raise
    with open("/proc/self/status") as fh:
        print(next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")))
    return 0


def dir_bytes(path: Path, skip: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()
               and not p.name.endswith(skip))


def prepare(cache: Path, size: int, n_pix: int) -> tuple[Path, dict]:
    root = cache / f"n{size}"
    done = root / "survey.json"
    if done.exists():
        return root, json.loads(done.read_text())
    t0 = time.perf_counter()
    info = write_survey(root, size, n_pix)
    config = bench_config(root, "cpu", 1, 0)
    cfg = json.dumps(config)
    subprocess.run([sys.executable, "-m", "skysift", "check", "--config-json", cfg,
                    "--report", str(root / "check.json"), "--headers",
                    str(root / "headers.json")], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "skysift", "index", "--config-json", cfg,
                    "--out-dir", str(root / "index"), "--headers", str(root / "headers.json")],
                   check=True, capture_output=True)
    shards = json.loads((root / "index" / "shards.json").read_text())["shards"]
    info.update(n_objects=sum(s["n_objects"] for s in shards),
                shards=[s["shard"] for s in shards], build_s=time.perf_counter() - t0,
                tile_bytes=dir_bytes(root / "tiles"), index_bytes=dir_bytes(root / "index"))
    done.write_text(json.dumps(info))
    return root, info


def run_path(root: Path, info: dict, config: dict, model: Path, stream: bool) -> dict:
    """Score every shard by one path; sums of wall and CPU, peaks, bytes written."""
    name = f"stream{config['infer']['tiles_in_flight']}" if stream else "today"
    out = root / name
    if out.exists():
        for p in sorted(out.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    out.mkdir(exist_ok=True)  # emptied above when a run was cut short
    cfg, index = json.dumps(config), str(root / "index")
    total = {"wall": 0.0, "cpu": 0.0, "peaks": {}}
    for shard in info["shards"]:
        scores = str(out / f"{shard}.scores.fits")
        if stream:
            runs = {"infer --shard": ["infer", "--config-json", cfg, "--shard", shard,
                                      "--index-dir", index, "--models", str(model),
                                      "--out", scores,  # and its rejects, as rule infer
                                      "--rejects", str(out / f"{shard}.rejects.ecsv")]}
        else:
            cut, stamps = str(out / f"{shard}.cutouts.h5"), str(out / f"{shard}.stamps.h5")
            runs = {"cutouts": ["cutouts", "--config-json", cfg, "--shard", shard,
                                "--index-dir", index, "--out", cut],
                    "preprocess": ["preprocess", "--config-json", cfg, "--in", cut, "--out",
                                   stamps, "--threads", str(config["train"]["threads"])],
                    "infer --stamps": ["infer", "--config-json", cfg, "--stamps", stamps,
                                       "--models", str(model), "--out", scores]}
        for label, args in runs.items():
            res = step(args, out / f"{shard}.{label.split()[0]}.log")
            total["wall"] += res["wall"]
            total["cpu"] += res["cpu"]
            total["peaks"][label] = max(total["peaks"].get(label, 0), res["peak_kib"])
            if res["worker_kib"]:
                total["peaks"]["decode worker"] = max(total["peaks"].get("decode worker", 0),
                                                      res["worker_kib"])
    total["written"] = dir_bytes(out, skip=(".scores.fits", ".log"))
    total["output"] = sum(f.stat().st_size for f in out.glob("*.scores.fits"))
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True, type=Path, help="directory of the cached surveys")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--baseline-sizes", type=int, nargs="*", help="default: the smallest size")
    p.add_argument("--tile-pix", type=int, default=2048)
    p.add_argument("--in-flight", type=int, nargs="+", default=[2],
                   help="infer.tiles_in_flight values to run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="train.threads and preprocess workers")
    p.add_argument("--arch", default="baseline3")
    a = p.parse_args()
    baseline = set(a.baseline_sizes if a.baseline_sizes is not None else [min(a.sizes)])
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"load average at start {os.getloadavg()}, device {a.device}, {a.arch}, "
          f"{a.threads} threads; tiles {a.tile_pix}^2 px, 3 bands, {STAMP}^2 stamps")
    rows = []
    for size in a.sizes:
        root, info = prepare(a.cache, size, a.tile_pix)
        n = info["n_objects"]
        print(f"\nsurvey {size}: {n} objects on {info['n_tiles']} tiles, {len(info['shards'])} "
              f"shards (built in {info['build_s']:.0f} s, once); tiles "
              f"{info['tile_bytes'] / n:.0f} B/object, index {info['index_bytes'] / n:.0f} "
              "B/object (both paths)")
        model = root / f"{a.arch}.pt"
        paths = [(f"tiles -> scores (in flight {k})", True, k) for k in a.in_flight]
        if size in baseline:
            paths.insert(0, ("today: cutouts + preprocess + infer", False, 0))
        for label, stream, k in paths:
            config = bench_config(root, a.device, a.threads, k)
            if not model.exists():
                write_model(model, config, a.arch)
            res = run_path(root, info, config, model, stream)
            peaks = ", ".join(f"{s} {v / 1024:.0f}" for s, v in res["peaks"].items())
            rows.append((size, label, n / res["wall"], res["cpu"] / n, res["written"] / n,
                         peaks))
            print(f"  {label}: {n / res['wall']:.0f} objects/s, {res['cpu'] / n * 1e3:.2f} CPU "
                  f"ms/object, {res['written'] / n:.0f} B/object written beyond tiles and "
                  f"scores ({res['output'] / n:.0f} B/object of scores), peak MiB: {peaks}",
                  flush=True)
        if size in baseline:
            today = next(r for r in rows if r[0] == size and r[1].startswith("today"))
            for r in rows:
                if r[0] == size and r is not today:
                    print(f"  ratio {r[1]} / today: {r[2] / today[2]:.2f}x objects/s, "
                          f"{r[3] / today[3]:.2f}x CPU s/object")
    print("\n| objects | path | objects/s | CPU ms/object | B/object written | peak MiB |")
    print("|---|---|---|---|---|---|")
    for size, label, rate, cpu, written, peaks in rows:
        print(f"| {size:,} | {label} | {rate:.0f} | {cpu * 1e3:.2f} | {written:,.0f} | {peaks} |")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(child(sys.argv[2:]))
    raise SystemExit(main())
