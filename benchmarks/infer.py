"""Inference end to end (HDF5 -> model -> scores table) against tensors in memory, from a
warm and from a cold page cache, and peak memory against the number of objects.

For each stamp shape (``BANDSxSIZE``) writes a synthetic stamps file of --n stamps in the
preprocess layout (images compressed as --compression, default none like
preprocess.compression; chunks of 256 objects; a uint8 mask, lzf) and a
checkpoint of --architecture with matching meta (random weights: the rate does not depend
on them), then times, in one process on one device, --repeats times each, interleaved
(medians):
  cold:   skysift.score.infer.infer_tile after the stamps file's pages were dropped from the
          page cache (fsync, then posix_fadvise(POSIX_FADV_DONTNEED); no root needed; the
          share of the file still resident is read back with util-linux ``fincore``): the
          stamps come from the disk (on a virtual machine, from whatever its host caches);
  warm:   the same right after, the file now in the page cache: read batches from HDF5 (the
          next one read in a thread while the model scores this one), score, write the FITS
          table;
  memory: the same model scoring the same stamps already in memory on the device;
and prints one JSON line per shape with the three rates, the ratios to memory (goal >= 0.9
on the CPU; the precision is train.precision: bf16 on CUDA that has it) and the cold
sequential read rate of the file alone. Then, unless --mem-n is empty, runs infer_tile in a
fresh subprocess per size of --mem-n and prints each peak memory (VmHWM: the process's own
high-water mark) and the largest over the smallest (goal: within 10 %), with bytes per
object of the stamps and scores files. --gather-shards runs skysift.score.gather (streamed:
memory bounded by one shard) over that many synthetic score files, printing peak memory
and time.

    python benchmarks/infer.py [--architecture baseline3] [--shapes 3x32] [--n 4096]
        [--batch 256] [--mem-n 10000 100000] [--repeats 3] [--gather-shards 2 8]
    python benchmarks/infer.py --architecture d4 --shapes 3x64 4x101 --batch 4096  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
from astropy.table import Table
from timing import Stopwatch, peak_rss_kib, rate, timed

from skysift.config import load
from skysift.io import H5_LAYOUT_VERSION, compression_kw, write_attrs
from skysift.learn.checkpoints import save_checkpoint
from skysift.learn.models import build_model
from skysift.learn.runtime import prepare_model, resolve_device, resolve_precision
from skysift.modelspec import model_specs
from skysift.score.batches import score
from skysift.score.gather import gather
from skysift.score.infer import infer_tile
from skysift.score.tables import write_fits_table

NORM = {"background": "border_median", "scale": "border_mad", "stretch": "arcsinh",
        "arcsinh_softening": 3.0, "chunk_objects": 256}
CHUNK = 256


def write_stamps(path: Path, n: int, bands: int, size: int, compression: str) -> Path:
    """A stamps file of ``n`` noise stamps, written block by block (never all in memory):
    images compressed as ``preprocess.compression``, the mask lzf, as preprocess writes."""
    rng = np.random.default_rng(0)
    shape = (bands, size, size)
    chunks = (min(CHUNK, max(n, 1)),) + shape
    # one block of noise stamps written over and over: the rates do not depend on the values,
    # and drawing 10^5 fresh stamps would take longer than the timings
    block = np.arcsinh(rng.standard_normal((min(n, 1024),) + shape, np.float32) / 3)
    with h5py.File(path, "w") as fh:
        images = fh.create_dataset("images", (n,) + shape, np.float32, chunks=chunks,
                                   **compression_kw(compression))
        mask = fh.create_dataset("mask", (n,) + shape, np.uint8, chunks=chunks,
                                 **compression_kw("lzf"))
        ones = np.ones((len(block),) + shape, np.uint8)
        for start in range(0, n, len(block)):
            m = min(len(block), n - start)
            images[start:start + m] = block[:m]
            mask[start:start + m] = ones[:m]
        for name, values in (("flags", np.zeros(n, np.uint8)),
                             ("index", np.arange(n, dtype=np.int64)),
                             ("id", np.arange(n, dtype=np.int64) + 2**60),
                             ("ra", np.zeros(n)), ("dec", np.zeros(n)),
                             ("pos_xy", np.zeros((n, 2)))):
            fh.create_dataset(name, data=values)
        write_attrs(fh, {"bands": [f"b{i}" for i in range(bands)], "stamp_size_pix": size,
                         "pixscale_arcsec": 0.2, "normalisation": NORM, "tile": "bench"})
        fh.attrs["h5_layout_version"] = H5_LAYOUT_VERSION
    return path


def write_checkpoint(path: Path, arch: str, bands: int, size: int) -> Path:
    torch.manual_seed(0)
    model = build_model(arch, bands, size)
    save_checkpoint(path, {
        "model_state": model.state_dict(), "optimizer_state": {}, "scheduler_state": {},
        "scaler_state": {}, "rng_state": {}, "epoch": 0, "config": {},
        "meta": {"architecture": arch, "task": "lens", "model": arch,
                 "bands": [f"b{i}" for i in range(bands)], "pixscale_arcsec": 0.2,
                 "stamp_size_pix": size, "normalisation": NORM, "in_channels": bands}})
    return path


def drop_cache(path: Path) -> None:
    """Evict ``path``'s pages from the page cache: fsync (dirty pages cannot be dropped),
    then ``posix_fadvise(POSIX_FADV_DONTNEED)`` over the whole file. No root needed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: Path) -> float | None:
    """Share of ``path``'s bytes in the page cache (util-linux ``fincore``); None without it."""
    exe = shutil.which("fincore")
    if exe is None:
        return None
    proc = subprocess.run([exe, "--bytes", "--noheadings", "--output", "RES", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return int(proc.stdout.split()[0]) / max(path.stat().st_size, 1)


def cold_read_rate(path: Path) -> float:
    """MB/s of reading the whole file once, sequentially, after dropping its pages."""
    drop_cache(path)
    with Stopwatch() as sw, open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 24):
            pass
    return path.stat().st_size / 1e6 / sw.seconds


def overrides(args) -> list[str]:
    return [f"infer.batch_size={args.batch}", f"train.device={args.device}",
            f"train.precision={args.precision}", f"train.threads={args.threads}"]


def rates(args, tmp: Path, bands: int, size: int) -> dict:
    """Median e2e and in-memory cutouts/s of one shape."""
    config = load(overrides=overrides(args))
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    stamps = write_stamps(tmp / f"stamps_{bands}x{size}.h5", args.n, bands, size,
                          args.compression)
    ckpt = write_checkpoint(tmp / f"{args.architecture}_{bands}x{size}.pt", args.architecture,
                            bands, size)
    torch.manual_seed(0)
    model = prepare_model(build_model(args.architecture, bands, size), device).eval()
    x = torch.asinh(torch.randn((args.n, bands, size, size), generator=torch.Generator(
        ).manual_seed(1)) / 3).to(device)
    infer_tile(config, stamps, [ckpt], tmp / "warm.fits")  # warm-up
    score(model, x[:args.batch], args.batch, device, precision)
    cold, e2e, memory, resident = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so a load change on the machine hits all
        drop_cache(stamps)
        resident.append(resident_fraction(stamps))
        seconds, _ = timed(infer_tile, config, stamps, [ckpt], tmp / "scores.fits")
        cold.append(rate(args.n, seconds))
        seconds, _ = timed(infer_tile, config, stamps, [ckpt], tmp / "scores.fits")
        e2e.append(rate(args.n, seconds))
        with Stopwatch() as sw:
            score(model, x, args.batch, device, precision)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        memory.append(rate(args.n, sw.seconds))
    read_mb_s = statistics.median(cold_read_rate(stamps) for _ in range(args.repeats))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu, {args.threads} threads"
    cold_s, e2e_s = statistics.median(cold), statistics.median(e2e)
    mem_s = statistics.median(memory)
    known = [r for r in resident if r is not None]
    return {"architecture": args.architecture, "device": name, "precision": precision,
            "shape": [bands, size, size], "n": args.n, "batch": args.batch,
            "repeats": args.repeats, "stamps_file_mb": round(stamps.stat().st_size / 1e6, 1),
            "cold_cutouts_per_s": round(cold_s, 1), "warm_cutouts_per_s": round(e2e_s, 1),
            "memory_cutouts_per_s": round(mem_s, 1),
            "ratio_cold_over_memory": round(cold_s / mem_s, 3),
            "ratio_warm_over_memory": round(e2e_s / mem_s, 3),
            "cold_resident_fraction_max": round(max(known), 4) if known else None,
            "cold_sequential_read_mb_per_s": round(read_mb_s, 1)}


def peak_rss(args, tmp: Path, n: int, bands: int, size: int) -> dict:
    """Peak memory (VmHWM) of infer_tile on ``n`` objects, in a fresh process."""
    stamps = write_stamps(tmp / f"mem_{n}.h5", n, bands, size, args.compression)
    ckpt = write_checkpoint(tmp / "mem.pt", args.architecture, bands, size)
    out = tmp / f"mem_{n}.fits"
    seconds, proc = timed(subprocess.run, [sys.executable, __file__, "--child", str(stamps),
                                           str(ckpt), str(out), *overrides(args)],
                          capture_output=True, text=True, check=True)
    return {"n": n, "peak_vmhwm_mib": round(int(proc.stdout.split()[-1]) / 1024, 1),
            "seconds": round(seconds, 1),
            "stamps_bytes_per_object": round(stamps.stat().st_size / n, 1),
            "scores_bytes_per_object": round(out.stat().st_size / n, 1)}


def write_scores(path: Path, start: int, n: int, rng: np.random.Generator) -> Path:
    """A scores file of ``n`` objects (index start.., a column for every model of every task
    of the default config, as gather expects; rounded logits: many ties)."""
    index = np.arange(start, start + n, dtype=np.int64)
    table = Table({"index": index, "id": index + 2**60, "ra": rng.uniform(0, 360, n),
                   "dec": rng.uniform(-60, 10, n), "tile": np.full(n, b"t0000000"),
                   "flags": np.zeros(n, np.uint8), "selected": np.ones(n, bool)})
    for spec in model_specs(load()):
        table[spec.column] = np.round(rng.normal(-4, 2, n), 3).astype(np.float32)
    write_fits_table(path, table, [])
    return path


def gather_run(tmp: Path, shards: int, per_shard: int) -> dict:
    """Peak memory (VmHWM) and time of gather over ``shards`` files of ``per_shard`` objects."""
    rng = np.random.default_rng(2)
    paths = [write_scores(tmp / f"g{shards}_{i}.fits", i * per_shard, per_shard, rng)
             for i in range(shards)]
    out = tmp / f"gather{shards}"
    seconds, proc = timed(subprocess.run, [sys.executable, __file__, "--child-gather", str(out),
                                           *map(str, paths)],
                          capture_output=True, text=True, check=True)
    return {"shards": shards, "objects": shards * per_shard,
            "peak_vmhwm_mib": round(int(proc.stdout.split()[-1]) / 1024, 1),
            "seconds": round(seconds, 1),
            "catalog_fits_bytes_per_object": round(
                (out / "catalog.fits").stat().st_size / (shards * per_shard), 1),
            "catalog_csv_bytes_per_object": round(
                (out / "catalog.csv").stat().st_size / (shards * per_shard), 1)}


def child(argv: list[str]) -> int:
    if argv[0] == "--child-gather":
        out, *paths = argv[1:]
        gather(load(), paths, Path(out) / "catalog.fits", Path(out) / "catalog.csv",
               Path(out) / "candidates")
    else:
        stamps, ckpt, out, *sets = argv[1:]
        infer_tile(load(overrides=sets), stamps, [ckpt], out)
    print(peak_rss_kib())  # VmHWM, KiB
    return 0


def main() -> int:
    if sys.argv[1:2] in (["--child"], ["--child-gather"]):
        return child(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--architecture", default="baseline3")
    p.add_argument("--shapes", nargs="*", default=["3x32"])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compression", default="none", choices=["none", "lzf", "gzip"],
                   help="of the stamps' images (preprocess.compression; default none)")
    p.add_argument("--mem-n", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--mem-shape", default="3x16", help="stamp shape of the memory runs")
    p.add_argument("--gather-shards", type=int, nargs="*", default=[],
                   help="gather runs over this many score files of --gather-per-shard objects")
    p.add_argument("--gather-per-shard", type=int, default=100_000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            bands, size = (int(v) for v in shape.split("x"))
            print(json.dumps(rates(args, Path(tmp), bands, size)), flush=True)
        if args.mem_n:
            bands, size = (int(v) for v in args.mem_shape.split("x"))
            runs = [peak_rss(args, Path(tmp), n, bands, size) for n in args.mem_n]
            print(json.dumps({"peak_memory": runs, "shape": [bands, size, size],
                              "ratio_peak_largest_over_smallest": round(
                                  runs[-1]["peak_vmhwm_mib"] / runs[0]["peak_vmhwm_mib"], 3)}),
                  flush=True)
        for shards in args.gather_shards:
            print(json.dumps({"gather": gather_run(Path(tmp), shards, args.gather_per_shard)}),
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
