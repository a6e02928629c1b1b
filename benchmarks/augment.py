"""Benchmark: batched skysift.learn.augment.augment_batch vs a per-sample loop of the same ops.

Same input, same operations (random D4 element, sub-pixel shift, Gaussian noise), same
process, on CUDA when available (else CPU); prints median seconds and the ratio.

    python benchmarks/augment.py [--batch 512] [--size 48] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import Stopwatch, rate

from skysift.learn.symmetry import d4_apply
from skysift.learn.transforms import augment_batch, subpixel_shift

CFG = {"d4": True, "shift_pix": 1.5, "noise_sigma": 0.02}


def per_sample(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The baseline: one sample at a time, the way a Dataset.__getitem__ would do it."""
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        k = int(torch.randint(0, 8, (1,), generator=generator, device=x.device))
        y = d4_apply(x[i:i + 1], k)
        unit = torch.rand((1, 2), generator=generator, device=x.device)
        shift = (2 * unit - 1) * CFG["shift_pix"]
        y = subpixel_shift(y, shift)
        noise = torch.randn(y.shape, generator=generator, device=x.device)
        out[i:i + 1] = y + CFG["noise_sigma"] * noise
    return out


def synced(fn, *args) -> float:
    """Seconds of ``fn(*args)``, the device synchronised before and after (``args[0]``'s)."""
    if args[0].device.type == "cuda":
        torch.cuda.synchronize()
    with Stopwatch() as sw:
        fn(*args)
        if args[0].device.type == "cuda":
            torch.cuda.synchronize()
    return sw.seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen, device=device)
    augment_batch(x, CFG, gen), per_sample(x[:4], gen)  # warm-up (kernels, allocator)
    times: dict[str, list[float]] = {"loop": [], "batched": []}
    for _ in range(args.repeats):
        times["loop"].append(synced(per_sample, x, gen))
        times["batched"].append(synced(augment_batch, x, CFG, gen))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device={device} batch={args.batch} size={args.size} bands=3 repeats={args.repeats}")
    for name, sec in med.items():
        print(f"{name:>8}: median {sec * 1e3:.1f} ms ({rate(args.batch, sec):.0f} samples/s)")
    print(f"speed-up batched/loop: {med['loop'] / med['batched']:.1f}x")


if __name__ == "__main__":
    main()
