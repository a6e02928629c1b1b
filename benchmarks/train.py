"""Training images/s: the real loop (HDF5 -> augmentation -> step) against tensors in memory.

For each architecture, in one process and on one device, times
  memory: the optimisation step (forward, backward, AdamW) on one batch already on the device;
  real:   skysift's loop: batches planned and read from the training-set HDF5 (streamed by
          DataLoader workers, or from RAM with --data ram), moved to the device, augmented on
          the fly as the config says, then the same step (skysift.learn.trainer.Trainer);
and prints one JSON line each with both rates, their ratio (goal >= 0.9 on CPU) and, on
CUDA, the mean GPU utilisation sampled every 50 ms during each timing (goal >= 80 %). The
two are timed alternately --repeats times and the medians reported, so a machine whose
load changes affects both alike.
Precision and memory format are skysift's: bf16 autocast and channels_last on CUDA.

Without --trainset a synthetic training set of --n stamps of --bands x --size^2 is written
to a temporary folder (the rates do not depend on the pixel values).

    python benchmarks/train.py [--trainset results/train/lens.h5] [--architectures baseline3
        resnet18 deeplens d4] [--batch 64] [--steps 30] [--data stream] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timing import Stopwatch, rate

from skysift.config import load
from skysift.io import write_stamps
from skysift.learn.loader import TrainData, make_loader, open_data
from skysift.learn.models import build_model
from skysift.learn.runtime import (
    autocast,
    prepare_model,
    resolve_device,
    resolve_precision,
    to_device,
)
from skysift.learn.train import _augmenter
from skysift.learn.trainer import Trainer


class Utilisation:
    """Mean GPU utilisation (%) sampled in a thread while the block runs (None on CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = device, []
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(torch.cuda.utilization(self.device))

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_trainset(path: Path, n: int, bands: int, size: int) -> None:
    """A training set of ``n`` random stamps (70 % train, 30 % val) in the real layout."""
    rng = np.random.default_rng(0)
    images = np.arcsinh(rng.normal(size=(n, bands, size, size)).astype(np.float32) / 3)
    split = (rng.random(n) < 0.3).astype(np.uint8)
    write_stamps(path, {"images": images, "mask": np.ones(images.shape, np.uint8),
                        "flags": np.zeros(n, np.uint8), "index": np.arange(n, dtype=np.int64),
                        "id": np.arange(n, dtype=np.int64),
                        "label": (rng.random(n) < 0.2).astype(np.uint8), "split": split},
                 {"bands": [f"b{i}" for i in range(bands)], "stamp_size_pix": size,
                  "pixscale_arcsec": 0.263, "task": "lens",
                  "normalisation": {"stretch": "arcsinh", "arcsinh_softening": 3.0}})


def memory_stepper(arch: str, shape, batch: int, device, precision):
    """A function running one optimisation step on one batch already on the device."""
    torch.manual_seed(0)
    model = prepare_model(build_model(arch, shape[0], shape[-1]), device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = to_device(torch.randn(batch, *shape), device)
    y = (torch.rand(batch) < 0.2).float().to(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(x)
        F.binary_cross_entropy_with_logits(logits.float(), y).backward()
        opt.step()

    for _ in range(3):  # warm-up: allocator, cuDNN algorithm choice
        step()
    return step


def real_trainer(arch: str, data: TrainData, config: dict, batch: int, steps: int, device,
                 precision, repeats: int) -> Trainer:
    """skysift's Trainer over ``steps`` batches of the training set (the epoch timed)."""
    n = batch * steps
    src = data.sources[0]
    reps = -(-n // len(src.rows))
    src.rows = np.tile(src.rows, reps)[:n]  # sorted order is irrelevant: the plan shuffles
    src.labels = np.tile(src.labels, reps)[:n]
    data.sources = [src]
    data.__post_init__()
    cfg = {**config["train"], "batch_size": batch, "epochs": repeats + 1}
    loader = make_loader(data, cfg["data"], cfg["ram_gb"], cfg["workers"], device)
    torch.manual_seed(0)
    model = prepare_model(build_model(arch, data.shape[0], data.shape[-1]), device)
    return Trainer(model, data, loader, cfg, device, precision, torch.Generator().manual_seed(0))


def measure(device, fn) -> tuple[float, float | None, int]:
    """(seconds, mean GPU utilisation, examples) of one call of ``fn`` returning examples."""
    sync(device)
    with Utilisation(device) as util, Stopwatch() as sw:
        n = fn()
        sync(device)
    return sw.seconds, util.mean, n


def compare(arch: str, trainset, config: dict, args, device, precision) -> dict:
    """Interleaved timings (memory, real, memory, real, ...): medians resist a busy machine."""
    shape = open_data(trainset).shape
    step = memory_stepper(arch, shape, args.batch, device, precision)
    trainer = real_trainer(arch, open_data(trainset), config, args.batch, args.steps, device,
                           precision, args.repeats)
    augment = _augmenter(config, trainer.data.attrs.get("normalisation"))
    trainer.train_epoch(augment)  # warm-up epoch: workers, allocator, cuDNN

    def memory() -> int:
        for _ in range(args.steps):
            step()
        return args.batch * args.steps

    mem, real = [], []
    for _ in range(args.repeats):
        mem.append(measure(device, memory))
        real.append(measure(device, lambda: trainer.train_epoch(augment)[1]))
    rates = {name: [rate(n, s) for s, _, n in runs] for name, runs in (("m", mem), ("r", real))}
    utils = {name: [u for _, u, _ in runs if u is not None] for name, runs in
             (("m", mem), ("r", real))}
    ratio = [r / m for r, m in zip(rates["r"], rates["m"], strict=True)]
    return {"memory_images_per_s": round(float(np.median(rates["m"])), 1),
            "real_images_per_s": round(float(np.median(rates["r"])), 1),
            "ratio_real_over_memory": round(float(np.median(ratio)), 3),
            "ratios": [round(v, 3) for v in ratio],
            "gpu_util_memory_pct": float(np.median(utils["m"])) if utils["m"] else None,
            "gpu_util_real_pct": float(np.median(utils["r"])) if utils["r"] else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainset", help="a training set HDF5 (default: a synthetic one)")
    p.add_argument("--architectures", nargs="+", default=["baseline3", "resnet18", "deeplens"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="batches per timing")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings of each")
    p.add_argument("--data", default="stream", choices=["stream", "ram"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--n", type=int, default=4096, help="synthetic stamps")
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--size", type=int, default=48)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = load(overrides=[f"train.data={args.data}", f"train.workers={args.workers}",
                             f"train.device={args.device}", f"train.precision={args.precision}"])
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu, {args.threads} threads"
    with tempfile.TemporaryDirectory() as tmp:
        trainset = args.trainset
        if trainset is None:
            trainset = Path(tmp) / "synthetic.h5"
            synthetic_trainset(trainset, args.n, args.bands, args.size)
        for arch in args.architectures:
            res = compare(arch, trainset, config, args, device, precision)
            print(json.dumps({
                "architecture": arch, "device": name, "precision": precision,
                "channels_last": device.type == "cuda", "batch": args.batch,
                "shape": list(open_data(trainset).shape), "data": args.data,
                "workers": args.workers, "repeats": args.repeats, **res}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
