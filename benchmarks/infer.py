"""Inference cutouts/s end to end (HDF5 -> model -> scores table) against tensors in memory.

For each stamp shape (``BANDSxSIZE``) writes a synthetic stamps file of --n stamps in the
preprocess layout (gzip level 1, chunks of 256 objects) and a checkpoint of --architecture
with matching meta (random weights: the rate does not depend on them), then times in one
process and on one device
  e2e:    skysift.infer.infer_tile: read batches from HDF5 (the next one read in a thread
          while the model scores this one), score, write the FITS table;
  memory: the same model scoring the same stamps already in memory on the device;
and prints one JSON line per shape with both rates and their ratio (the precision is
train.precision: bf16 on CUDA that has it).

    python benchmarks/infer.py [--architecture d4] [--shapes 3x64 4x101] [--n 8192]
        [--batch 1024]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from skysift.config import load
from skysift.infer import infer_tile, score
from skysift.io import write_stamps
from skysift.models import build_model, prepare_model, resolve_device, resolve_precision
from skysift.train import save_checkpoint

NORM = {"background": "border_median", "scale": "border_mad", "stretch": "arcsinh",
        "arcsinh_softening": 3.0, "chunk_objects": 256}


def write_inputs(tmp: Path, arch: str, n: int, bands: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    names = [f"b{i}" for i in range(bands)]
    stamps = tmp / f"stamps_{bands}x{size}.h5"
    images = np.arcsinh(rng.normal(size=(n, bands, size, size)).astype(np.float32) / 3)
    write_stamps(stamps, {"images": images, "mask": np.ones(images.shape, np.uint8),
                          "flags": np.zeros(n, np.uint8), "index": np.arange(n, dtype=np.int64),
                          "id": np.arange(n, dtype=np.int64), "ra": np.zeros(n),
                          "dec": np.zeros(n), "pos_xy": np.zeros((n, 2))},
                 {"bands": names, "stamp_size_pix": size, "pixscale_arcsec": 0.2,
                  "normalisation": NORM, "tile": "bench"})
    torch.manual_seed(0)
    model = build_model(arch, bands, size)
    ckpt = tmp / f"{arch}_{bands}x{size}.pt"
    save_checkpoint(ckpt, {
        "model_state": model.state_dict(), "optimizer_state": {}, "scheduler_state": {},
        "scaler_state": {}, "rng_state": {}, "epoch": 0, "config": {},
        "meta": {"architecture": arch, "task": "lens", "model": arch, "bands": names,
                 "pixscale_arcsec": 0.2, "stamp_size_pix": size, "normalisation": NORM,
                 "in_channels": bands}})
    return stamps, ckpt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--architecture", default="d4")
    p.add_argument("--shapes", nargs="+", default=["3x64", "4x101"])
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    args = p.parse_args()
    config = load(overrides=[f"infer.batch_size={args.batch}", f"train.device={args.device}",
                             f"train.precision={args.precision}",
                             f"train.threads={args.threads}"])
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu, {args.threads} threads"
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            bands, size = (int(v) for v in shape.split("x"))
            stamps, ckpt = write_inputs(Path(tmp), args.architecture, args.n, bands, size)
            infer_tile(config, stamps, [ckpt], Path(tmp) / "warm.fits")  # warm-up
            t0 = time.perf_counter()
            infer_tile(config, stamps, [ckpt], Path(tmp) / "scores.fits")
            e2e = args.n / (time.perf_counter() - t0)
            torch.manual_seed(0)
            model = prepare_model(build_model(args.architecture, bands, size), device).eval()
            rng = np.random.default_rng(1)
            x = torch.from_numpy(rng.normal(size=(args.n, bands, size, size)).astype(np.float32))
            x = x.to(device)
            score(model, x[:args.batch], args.batch, device, precision)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            score(model, x, args.batch, device, precision)
            memory = args.n / (time.perf_counter() - t0)
            print(json.dumps({"architecture": args.architecture, "device": name,
                              "precision": precision, "shape": [bands, size, size],
                              "n": args.n, "batch": args.batch,
                              "e2e_cutouts_per_s": round(e2e, 1),
                              "memory_cutouts_per_s": round(memory, 1),
                              "ratio_e2e_over_memory": round(e2e / memory, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
